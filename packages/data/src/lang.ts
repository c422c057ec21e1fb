// Language identification from Unicode scripts, with stopwords and diacritics for Latin-script languages.
// Good enough to label the six MPO target languages per row; group-level assignment (mpo.ts) fixes the rest.

/** Languages this module can score. */
export const KNOWN_LANGUAGES = [
  'en',
  'zh',
  'ja',
  'ko',
  'ar',
  'bn',
  'th',
  'hi',
  'ru',
  'vi',
  'sw',
  'jv',
  'it',
] as const;
export type KnownLanguage = (typeof KNOWN_LANGUAGES)[number];

type Script = 'han' | 'kana' | 'hangul' | 'arabic' | 'bengali' | 'thai' | 'devanagari' | 'cyrillic' | 'latin';

function scriptOf(cp: number): Script | undefined {
  if (cp < 0x80) return (cp >= 65 && cp <= 90) || (cp >= 97 && cp <= 122) ? 'latin' : undefined;
  if ((cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0xf900 && cp <= 0xfaff))
    return 'han';
  if ((cp >= 0x3040 && cp <= 0x30ff) || (cp >= 0x31f0 && cp <= 0x31ff) || (cp >= 0xff66 && cp <= 0xff9f))
    return 'kana';
  if ((cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0x1100 && cp <= 0x11ff) || (cp >= 0x3130 && cp <= 0x318f)) {
    return 'hangul';
  }
  if (
    (cp >= 0x0600 && cp <= 0x06ff) ||
    (cp >= 0x0750 && cp <= 0x077f) ||
    (cp >= 0xfb50 && cp <= 0xfdff) ||
    (cp >= 0xfe70 && cp <= 0xfeff)
  ) {
    return 'arabic';
  }
  if (cp >= 0x0980 && cp <= 0x09ff) return 'bengali';
  if (cp >= 0x0e00 && cp <= 0x0e7f) return 'thai';
  if (cp >= 0x0900 && cp <= 0x097f) return 'devanagari';
  if (cp >= 0x0400 && cp <= 0x04ff) return 'cyrillic';
  if ((cp >= 0xc0 && cp <= 0x24f && cp !== 0xd7 && cp !== 0xf7) || (cp >= 0x1e00 && cp <= 0x1eff))
    return 'latin';
  return undefined;
}

// Characters weighted by roughly how much text they stand for: a Han character or a kana is about a word, a
// Hangul block a couple of letters. Without it a Chinese sentence quoting a short English phrase reads as English.
const WEIGHT: Record<Script, number> = {
  han: 3,
  kana: 3,
  hangul: 2,
  arabic: 1,
  bengali: 1,
  thai: 1,
  devanagari: 1,
  cyrillic: 1,
  latin: 1,
};

// Frequent function words. Short lists suffice: a sentence of a few words nearly always hits one.
const STOPWORDS: Record<'en' | 'sw' | 'vi' | 'jv' | 'it', ReadonlySet<string>> = {
  en: new Set(
    'the and to of a is in that it you i for how what can my with this are be do not your or on me have as if they their some there will would should'.split(
      ' ',
    ),
  ),
  sw: new Set(
    'na ya wa kwa ni za la katika je hii kuwa yangu wangu nini gani kama lakini sana hiyo kwamba bila mimi wewe yako ili au pia vya cha zaidi hilo huo hizi watu jinsi ninawezaje nawezaje kufanya'.split(
      ' ',
    ),
  ),
  vi: new Set(
    'và của là có không tôi các những một được cho với người để này làm thể như trong bạn khi nào gì đã sẽ'.split(
      ' ',
    ),
  ),
  jv: new Set(
    'lan ing sing seng aku kowe awakmu ora gak iki iku kanggo enggo karo bisa iso apa opo piye kepriye saka soko marang uga yen nek kang dadi wis wes kaya koyok nggawe gawe carane supaya cek ben ki yo lak kudu kok pengen ae toh ngerti akeh nyapo onok endi arep mung ngono wong uwong'.split(
      ' ',
    ),
  ),
  it: new Set(
    'il di che e la per un una non è sono come del della dei delle al alla nel mi con si ho le gli lo ci ne questo questa quello posso puoi può quale quali perché cosa più voglio sto così mio mia persone qualcuno sarebbe dovrei fare modo essere tutti'.split(
      ' ',
    ),
  ),
};
const LATIN_LANGS = ['en', 'sw', 'vi', 'jv', 'it'] as const;

// Letters only Vietnamese uses among these languages (ă đ ơ ư and the stacked tone marks of U+1EA0–U+1EF9).
function isVietnameseLetter(cp: number): boolean {
  return (
    cp === 0x103 ||
    cp === 0x102 ||
    cp === 0x111 ||
    cp === 0x110 ||
    cp === 0x1a1 ||
    cp === 0x1a0 ||
    cp === 0x1b0 ||
    cp === 0x1af ||
    (cp >= 0x1ea0 && cp <= 0x1ef9)
  );
}

/**
 * A score in [0, 1] per known language: roughly the share of the text's letters that are evidence for it.
 * Scores of different texts are comparable, which the group-level assignment relies on.
 */
export function scoreLanguages(text: string): Record<KnownLanguage, number> {
  const counts: Record<Script, number> = {
    han: 0,
    kana: 0,
    hangul: 0,
    arabic: 0,
    bengali: 0,
    thai: 0,
    devanagari: 0,
    cyrillic: 0,
    latin: 0,
  };
  let total = 0;
  let viLetters = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const s = scriptOf(cp);
    if (!s) continue;
    const w = WEIGHT[s];
    counts[s] += w;
    total += w;
    if (isVietnameseLetter(cp)) viLetters++;
  }
  const out = Object.fromEntries(KNOWN_LANGUAGES.map((l) => [l, 0])) as Record<KnownLanguage, number>;
  if (total === 0) return out;
  const cjk = counts.han + counts.kana;
  // Japanese writes kana in nearly every sentence; Chinese never does. A trace of kana (a quoted name) is not
  // enough to call a Chinese text Japanese, hence the 10× ramp.
  const kanaShare = cjk > 0 ? counts.kana / cjk : 0;
  const janess = Math.min(1, 10 * kanaShare);
  out.zh = (counts.han / total) * (1 - janess);
  out.ja = (cjk / total) * janess;
  out.ko = counts.hangul / total;
  out.ar = counts.arabic / total;
  out.bn = counts.bengali / total;
  out.th = counts.thai / total;
  out.hi = counts.devanagari / total;
  out.ru = counts.cyrillic / total;
  if (counts.latin > 0) {
    const hits: Record<(typeof LATIN_LANGS)[number], number> = { en: 0, sw: 0, vi: 0, jv: 0, it: 0 };
    for (const w of text.toLowerCase().split(/[^\p{L}]+/u)) {
      if (!w) continue;
      for (const l of LATIN_LANGS) if (STOPWORDS[l].has(w)) hits[l]++;
    }
    // Each Vietnamese-only letter is strong evidence.
    hits.vi += viLetters;
    // A small prior keeps a stopword-free Latin text from scoring 0 everywhere.
    const prior = 0.1;
    let sum = 0;
    for (const l of LATIN_LANGS) sum += hits[l] + prior;
    for (const l of LATIN_LANGS) out[l] = ((counts.latin / total) * (hits[l] + prior)) / sum;
  }
  return out;
}

/** The best-scoring language among `candidates` (default: all known), or undefined for a text with no letters. */
export function detectLanguage(
  text: string,
  candidates: readonly string[] = KNOWN_LANGUAGES,
): string | undefined {
  const s = scoreLanguages(text) as Record<string, number>;
  let best: string | undefined;
  let bestScore = 0;
  for (const l of candidates) {
    const v = s[l] ?? 0;
    if (v > bestScore) {
      best = l;
      bestScore = v;
    }
  }
  return best;
}

/**
 * The injective assignment of languages to rows maximising the summed score (rows of one prompt group are
 * translations into distinct languages). Exhaustive for groups up to 8 rows; beyond that, or with more rows than
 * languages, each row takes its own best language.
 */
export function assignDistinct(
  scores: ReadonlyArray<Record<string, number>>,
  languages: readonly string[],
): string[] {
  const m = scores.length;
  const argmax = (s: Record<string, number>) =>
    languages.reduce((best, l) => ((s[l] ?? 0) > (s[best] ?? 0) ? l : best), languages[0]!);
  if (m > languages.length || m > 8) return scores.map(argmax);
  let bestTotal = Number.NEGATIVE_INFINITY;
  let best: string[] = [];
  const cur: string[] = [];
  const used = new Set<string>();
  const rec = (i: number, total: number) => {
    if (i === m) {
      // ">" keeps the first maximum found, so ties resolve the same way every time.
      if (total > bestTotal) {
        bestTotal = total;
        best = [...cur];
      }
      return;
    }
    for (const l of languages) {
      if (used.has(l)) continue;
      used.add(l);
      cur.push(l);
      rec(i + 1, total + (scores[i]![l] ?? 0));
      cur.pop();
      used.delete(l);
    }
  };
  rec(0, 0);
  return best;
}
