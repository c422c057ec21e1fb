// Text normalisation shared by the refusal phrases and the responses they are matched against, so that
// "I can’t", "I CAN'T" and "Ｉ ｃａｎ＇ｔ" are one string, and Arabic/Bengali spelling variants do not split
// a phrase into several.

const HTML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** `&#39;` and friends: some MPO responses were scraped with HTML escapes left in. */
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, body: string) => {
    if (body[0] === '#') {
      const code =
        body[1] === 'x' || body[1] === 'X' ? Number.parseInt(body.slice(2), 16) : Number(body.slice(1));
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return HTML_ENTITIES[body.toLowerCase()] ?? m;
  });
}

// Punctuation NFKC leaves alone (CJK, Arabic, Bengali and typographic forms) mapped to ASCII.
const PUNCT: Record<string, string> = {
  '\u2018': "'", // ‘
  '\u2019': "'", // ’
  '\u201a': "'",
  '\u201b': "'",
  '\u02bc': "'", // modifier letter apostrophe
  '\u00b4': "'",
  '`': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u00ab': '"',
  '\u00bb': '"',
  '\u300c': '"', // 「
  '\u300d': '"',
  '\u300e': '"',
  '\u300f': '"',
  '\u3002': '.', // 。
  '\uff61': '.',
  '\u3001': ',', // 、
  '\u060c': ',', // Arabic comma
  '\u061b': ';', // Arabic semicolon
  '\u061f': '?', // Arabic question mark
  '\u06d4': '.', // Arabic full stop
  '\u0964': '.', // danda (Bengali full stop)
  '\u0965': '.',
  '\u2013': '-',
  '\u2014': '-',
  '\u2026': '...',
};
const PUNCT_RE = new RegExp(`[${Object.keys(PUNCT).join('')}]`, 'g');

// Invisible characters that only get in the way of substring matching: zero-width (non-)joiners and spaces,
// BOM, soft hyphen, bidi marks.
const INVISIBLE_RE = /[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]/g;

// Arabic: tatweel (kashida) is pure elongation; harakat and the dagger alif are optional vowel marks that a
// response may or may not write.
const ARABIC_MARKS_RE = /[\u0640\u064b-\u065f\u0670\u06d6-\u06ed]/g;
// Hamza-carrying alif forms are commonly written as a bare alif, alif maqsura as ya, ta marbuta as ha.
const ARABIC_LETTERS: Record<string, string> = {
  '\u0622': '\u0627', // آ
  '\u0623': '\u0627', // أ
  '\u0625': '\u0627', // إ
  '\u0671': '\u0627', // ٱ
  '\u0649': '\u064a', // ى → ي
  '\u0629': '\u0647', // ة → ه
};
const ARABIC_LETTERS_RE = /[\u0622\u0623\u0625\u0671\u0649\u0629]/g;

// Bengali: the nukta letters ড় ঢ় য় have precomposed and decomposed spellings; NFKC decomposes them, so only
// the khanda ta needs folding (ৎ is also written ত + virama + ZWJ, and the ZWJ is removed above).
const BENGALI_RE = /\u09ce/g;

/**
 * The canonical form used for refusal matching: HTML entities decoded, NFKC (full-width forms to ASCII,
 * compatibility characters, composed Vietnamese/Korean), case folded, typographic/CJK/Arabic/Bengali punctuation
 * mapped to ASCII, invisible characters removed, Arabic marks and letter variants folded, whitespace collapsed,
 * and no space before `, . ! ? ; :` (Arabic and French-style text puts one there).
 */
export function normalizeText(input: string): string {
  let s = decodeEntities(input).normalize('NFKC').toLowerCase();
  s = s.replace(INVISIBLE_RE, '');
  s = s.replace(PUNCT_RE, (c) => PUNCT[c] ?? c);
  s = s.replace(ARABIC_MARKS_RE, '').replace(ARABIC_LETTERS_RE, (c) => ARABIC_LETTERS[c] ?? c);
  s = s.replace(BENGALI_RE, '\u09a4\u09cd');
  s = s.replace(/\s+/g, ' ').replace(/ ([,.!?;:])/g, '$1');
  return s.trim();
}
