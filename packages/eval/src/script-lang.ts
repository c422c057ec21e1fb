// A rough language guess from the writing system, enough to tell the MPO data's and MultiJail's languages
// apart: every one except the Latin-script ones (en, it, vi, sw, jv) has its own script, and those five
// differ in a handful of very frequent words.

// Weights put scripts on a par per word: a Han character or Hangul syllable carries about what 2-3 Latin
// letters do, so a Chinese answer with an e-mail address in it is still Chinese.
const SCRIPTS: Array<[lang: string, re: RegExp, weight: number]> = [
  ['ja', /[\u3040-\u30ff]/gu, 2.5], // kana: Japanese text is also full of kanji
  ['zh', /\p{Script=Han}/gu, 2.5],
  ['ko', /\p{Script=Hangul}/gu, 2.5],
  ['ar', /\p{Script=Arabic}/gu, 1],
  ['bn', /\p{Script=Bengali}/gu, 1],
  ['th', /\p{Script=Thai}/gu, 1],
  ['latin', /\p{Script=Latin}/gu, 1],
];

const LATIN_WORDS: Record<string, string[]> = {
  en: ['the', 'and', 'you', 'to', 'of', 'is', 'that', 'i', 'it', 'for', 'can', 'are', 'this', 'with'],
  sw: [
    ...['na', 'kwa', 'ya', 'wa', 'ni', 'za', 'kuwa', 'la', 'katika', 'hii', 'cha', 'kama', 'yako', 'ili'],
    ...['kwamba', 'lakini', 'siwezi', 'samahani', 'labda', 'ndiyo', 'hapana', 'sana', 'mtu', 'watu'],
  ],
  it: ['il', 'di', 'che', 'e', 'la', 'per', 'non', 'un', 'una', 'è', 'sono', 'del', 'della', 'mi'],
  vi: ['và', 'của', 'là', 'không', 'có', 'tôi', 'bạn', 'những', 'được', 'các', 'cho', 'một', 'để', 'này'],
  jv: ['lan', 'ing', 'kang', 'iku', 'ora', 'aku', 'sing', 'karo', 'wong', 'opo', 'kok', 'iso', 'ana', 'gak'],
};

function count(text: string, re: RegExp): number {
  return text.match(re)?.length ?? 0;
}

/**
 * Best guess among zh ja ko ar bn th en sw it vi jv, or undefined for text with no letters. Only the first
 * `head` characters are looked at: answers often trail off into another language.
 */
export function guessLanguage(input: string, head = 400): string | undefined {
  const text = input.slice(0, head);
  let best = '';
  let bestCount = 0;
  const kana = count(text, SCRIPTS[0]![1]);
  for (const [lang, re, weight] of SCRIPTS) {
    const c = count(text, re) * weight;
    if (c > bestCount) {
      best = lang;
      bestCount = c;
    }
  }
  if (!bestCount) return undefined;
  // A few kana in a mostly-Han text still mean Japanese; Chinese never uses kana.
  if (best === 'zh' && kana >= 3) return 'ja';
  if (best !== 'latin') return best;
  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  let lang = 'en';
  let score = 0;
  for (const [l, list] of Object.entries(LATIN_WORDS)) {
    const set = new Set(list);
    const s = words.reduce((acc, w) => acc + (set.has(w) ? 1 : 0), 0);
    if (s > score) {
      lang = l;
      score = s;
    }
  }
  return lang;
}
