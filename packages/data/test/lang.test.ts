// Language identification, measured on MultiJail's human translations (10 languages × 315 prompts).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assignDistinct, detectLanguage, scoreLanguages } from '../src/index.js';
import { DATASETS } from './helpers.js';

/** RFC 4180 CSV (quoted fields, doubled quotes, newlines inside quotes). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

describe('detectLanguage on MultiJail', () => {
  const [header, ...rows] = parseCsv(
    readFileSync(`${DATASETS}/multijail/MultiJail.csv`, 'utf8').replace(/^\uFEFF/, ''),
  );
  const langs = ['en', 'zh', 'it', 'vi', 'ar', 'ko', 'th', 'bn', 'sw', 'jv'];
  for (const lang of langs) {
    it(`${lang}`, () => {
      const col = header!.indexOf(lang);
      const texts = rows.map((r) => r[col] ?? '').filter((t) => t.trim());
      expect(texts.length).toBeGreaterThan(300);
      const right = texts.filter((t) => detectLanguage(t) === lang).length;
      // Script-based languages are exact; Latin-script ones rest on stopwords and diacritics.
      const floor = ['en', 'it', 'vi', 'sw', 'jv'].includes(lang) ? 0.9 : 0.99;
      expect(right / texts.length, `${lang}: ${right}/${texts.length}`).toBeGreaterThanOrEqual(floor);
    });
  }
});

describe('scores', () => {
  it('kana decides Japanese over Chinese', () => {
    expect(detectLanguage('私は学生です')).toBe('ja');
    expect(detectLanguage('我是学生')).toBe('zh');
    expect(detectLanguage('')).toBeUndefined();
    expect(detectLanguage('12345 !?')).toBeUndefined();
    const s = scoreLanguages('안녕하세요');
    expect(s.ko).toBe(1);
  });
  it('assignDistinct picks the best permutation', () => {
    // row 0 slightly prefers a, row 1 strongly prefers a: the joint optimum gives a to row 1
    expect(
      assignDistinct(
        [
          { a: 0.6, b: 0.5 },
          { a: 0.9, b: 0.1 },
        ],
        ['a', 'b'],
      ),
    ).toEqual(['b', 'a']);
    // more rows than languages: each row's own best
    expect(assignDistinct([{ a: 1 }, { a: 1 }], ['a'])).toEqual(['a', 'a']);
  });
});
