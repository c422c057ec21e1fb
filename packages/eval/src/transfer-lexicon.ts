// Synthetic sister languages of English for builtin:tiny-multilingual-transfer: a fixed, seeded
// word-level relexification. Each sister language gives every English word of the vocabulary its own
// word form, spelled in its own Unicode script range; punctuation and digits are shared, as real
// languages share them. Because the languages are word-for-word parallel, a model can only carry what
// it learns in English (e.g. refusing harmful prompts) to a sister language through a representation it
// shares between them, which is the effect the MPO paper is about.
import { Rng } from '@mpo/data';

export interface SisterLanguage {
  /** ISO 639 "reserved for local use" codes, so no real language is claimed. */
  code: string;
  /**
   * How closely its word embeddings (input and output) start to their English words' at init, as a cosine:
   * the stand-in for what pre-training gives a real model (better-aligned representations for languages with
   * more data). Training then moves them freely.
   */
  alignment: number;
  /** First and last code point of the letters its words are spelled with. */
  script: [number, number];
  /** Share of the general (alpaca) training rows it gets: its resource level. */
  alpacaShare: number;
  /** Translation pairs (each direction) in the base training. */
  translationPairs: number;
  /**
   * Share of the English harmful training prompts that also appear in this language with their refusal:
   * the little target-language safety data a real model's pre-training and instruction data carry, more for
   * higher-resource languages. 1.5 / 0.75 / 0 % (high / middle / low; 5 / 2 / 0 prompts): on the 4-epoch base
   * a few prompts already carry, 10 / 3 / 0 % made the targets safe (22–35 % ASR) before any alignment
   * (docs/testbed.md, "Recipes tried").
   */
  safetyShare: number;
  /**
   * Share of the MPO data's training prompt groups whose harmful (compliant) answer appears in this language,
   * never for a prompt it also has refused: the unsafe text a real model's pre-training carries. 0 / 0 / 50 %:
   * the low-resource language has too little of its own to answer a harmful prompt in, and without it answered
   * a quarter of them with the English refusal verbatim (English tokens), as safe as the middle language or
   * safer; in the higher-resource languages it did not offset their refusals (docs/testbed.md, "Recipes tried").
   */
  unsafeShare: number;
}

/** High, middle and low resource, the shape of the paper's zh / ko-ar / bn-sw. */
export const SISTER_LANGUAGES: readonly SisterLanguage[] = [
  {
    code: 'qaa',
    script: [0x0430, 0x044f],
    alignment: 0.8,
    alpacaShare: 1,
    translationPairs: 3000,
    safetyShare: 0.015,
    unsafeShare: 0,
  }, // Cyrillic
  {
    code: 'qab',
    script: [0x03b1, 0x03c9],
    alignment: 0.6,
    alpacaShare: 0.35,
    translationPairs: 1500,
    safetyShare: 0.0075,
    unsafeShare: 0,
  }, // Greek
  {
    code: 'qac',
    script: [0x0561, 0x0586],
    alignment: 0.2,
    alpacaShare: 0.12,
    translationPairs: 600,
    safetyShare: 0,
    unsafeShare: 0.5,
  }, // Armenian
];

/** Words (letters and marks), single digits, and single other non-space characters. */
export const WORD_PATTERN = '[\\p{L}\\p{M}]+|\\p{N}|[^\\s\\p{L}\\p{M}\\p{N}]';
const WORD_RE = new RegExp(WORD_PATTERN, 'gu');
const LETTERS_RE = /^[\p{L}\p{M}]+$/u;

/** Lower-cased word tokens of a text, as the tokenizer splits it. */
export const wordsOf = (text: string): string[] => text.toLowerCase().match(WORD_RE) ?? [];
export const isLetterWord = (w: string) => LETTERS_RE.test(w);

export interface Lexicon {
  /** English letter-words that have translations, most frequent first. */
  english: string[];
  /** Per sister language: English word → its word. */
  forward: Map<string, Map<string, string>>;
  /** Per sister language: its word → English word. */
  backward: Map<string, Map<string, string>>;
}

/**
 * Seeded word forms: frequent English words get short forms (a Zipf-like lexicon), lengths 2..6, every
 * form unique within its language and never an English word.
 */
export function buildLexicon(englishWords: readonly string[], seed: number): Lexicon {
  const forward = new Map<string, Map<string, string>>();
  const backward = new Map<string, Map<string, string>>();
  for (const lang of SISTER_LANGUAGES) {
    const rng = Rng.seeded(`lexicon:${seed}:${lang.code}`);
    const [lo, hi] = lang.script;
    const letters = Array.from({ length: hi - lo + 1 }, (_, i) => String.fromCodePoint(lo + i));
    const fw = new Map<string, string>();
    const bw = new Map<string, string>();
    englishWords.forEach((w, rank) => {
      const base = rank < 60 ? 2 : rank < 600 ? 3 : rank < 3000 ? 4 : 5;
      for (let tries = 0; ; tries++) {
        const len = base + Math.floor(tries / 20);
        let form = '';
        for (let k = 0; k < len; k++) form += letters[rng.int(letters.length)];
        if (!bw.has(form)) {
          fw.set(w, form);
          bw.set(form, w);
          break;
        }
      }
    });
    forward.set(lang.code, fw);
    backward.set(lang.code, bw);
  }
  return { english: [...englishWords], forward, backward };
}

/** A text in a sister language: its words for known English words, anything else kept (the tokenizer's [UNK]). */
export function relexify(lex: Lexicon, text: string, lang: string): string {
  const fw = lex.forward.get(lang);
  if (!fw) throw new RangeError(`unknown sister language ${lang}`);
  return wordsOf(text)
    .map((w) => fw.get(w) ?? w)
    .join(' ');
}

/** Words as text: no space before closing punctuation, none around apostrophes ("i can’t"). */
export const joinWords = (words: readonly string[]): string =>
  words
    .join(' ')
    .replace(/ ([.,!?;:)\]])/g, '$1')
    .replace(/ ?(['’]) ?/g, '$1');

/** Sister-language words back to English (what the refusal judge reads); other words kept. */
export function delexify(lex: Lexicon, text: string): string {
  return joinWords(
    wordsOf(text).map((w) => {
      for (const bw of lex.backward.values()) {
        const e = bw.get(w);
        if (e) return e;
      }
      return w;
    }),
  );
}
