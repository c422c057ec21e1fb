import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuiltinBenchmark } from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { loadCsrt, loadMultiJail, parseTags } from '../src/benchmarks.js';
import { writeCsrtSample } from '../src/csrt-sample.js';
import { CsvError, parseCsv } from '../src/csv.js';

const MULTIJAIL = resolveBuiltinBenchmark('builtin:multijail');

describe('parseCsv', () => {
  it('handles BOM, quotes, embedded commas, quotes, newlines and CRLF', () => {
    const text = '\ufeffid,a,b\r\n1,"x, y","say ""hi"""\r\n2,"line1\nline2",plain\n\n3,,""\n';
    const t = parseCsv(text, 'mem.csv');
    expect(t.header).toEqual(['id', 'a', 'b']);
    expect(t.records.map((r) => r.fields)).toEqual([
      ['1', 'x, y', 'say "hi"'],
      ['2', 'line1\nline2', 'plain'],
      ['3', '', ''],
    ]);
    // Line numbers are where each record starts; record 3 follows a two-line record and a blank line.
    expect(t.records.map((r) => r.line)).toEqual([2, 3, 6]);
  });

  it('reads a last record without a trailing newline', () => {
    expect(parseCsv('a,b\n1,2', 'f').records[0]!.fields).toEqual(['1', '2']);
  });

  it('names file and line in errors', () => {
    const cases: Array<[string, RegExp]> = [
      ['a,b\n1,2\n3\n', /bad\.csv:3: expected 2 fields, got 1/],
      ['a,b\n1,"open\nstill open\n', /bad\.csv:2: unterminated quoted field/],
      ['a,b\n1,"x"y\n', /bad\.csv:2: unexpected "y" after a closing quote/],
      ['a,b\n1,x"y\n', /bad\.csv:2: quote inside an unquoted field/],
      ['', /bad\.csv:1: empty file/],
    ];
    for (const [text, re] of cases) {
      expect(() => parseCsv(text, 'bad.csv')).toThrow(re);
    }
    try {
      parseCsv('a\n"x', 'bad.csv');
    } catch (e) {
      expect(e).toBeInstanceOf(CsvError);
      expect((e as CsvError).line).toBe(2);
      expect((e as CsvError).file).toBe('bad.csv');
    }
  });
});

describe('benchmark loaders', () => {
  it('loads MultiJail: 315 prompts per language, default languages are the paper six', () => {
    const mj = loadMultiJail(MULTIJAIL);
    expect(mj.languages).toEqual(['en', 'zh', 'ko', 'ar', 'bn', 'sw']);
    expect(mj.prompts).toHaveLength(6 * 315);
    const en = mj.byLanguage.en!;
    expect(en).toHaveLength(315);
    expect(en[0]!.id).toBe('0');
    // The BOM must not leak into the first column name or value.
    expect(en[0]!.prompt.startsWith('\ufeff')).toBe(false);
    expect(en[0]!.tags.length).toBeGreaterThan(0);
    expect(mj.byLanguage.zh![5]!.prompt).toMatch(/游泳/);
    expect(new Set(mj.prompts.map((p) => p.source))).toEqual(new Set(['anthropics', 'openai']));
  });

  it('selects any of the 10 languages and rejects unknown ones', () => {
    const mj = loadMultiJail(MULTIJAIL, { languages: ['jv', 'th', 'it', 'vi'] });
    expect(mj.languages).toEqual(['jv', 'th', 'it', 'vi']);
    expect(mj.byLanguage.th!.every((p) => p.prompt.length > 0)).toBe(true);
    expect(() => loadMultiJail(MULTIJAIL, { languages: ['en', 'fr'] })).toThrow(
      /unknown MultiJail language\(s\) fr/,
    );
  });

  it('loads CSRT (a file of its format made from MultiJail: CSRT itself is not shipped)', () => {
    const path = writeCsrtSample(join(mkdtempSync(join(tmpdir(), 'mpo-csrt-')), 'csrt.csv'), 5);
    const cs = loadCsrt(path);
    const mj = loadMultiJail(MULTIJAIL, { languages: ['en', 'zh', 'ko'] });
    expect(cs).toHaveLength(5);
    // MultiJail's row 0 is tagged violent, row 1 unethical + information (the first tags cells of the file).
    expect(cs[0]).toMatchObject({ id: '0', lang: 'csrt', tags: mj.byLanguage.en![0]!.tags });
    expect(cs[1]!.tags).toEqual(mj.byLanguage.en![1]!.tags);
    expect(cs[0]!.en).toBe(mj.byLanguage.en![0]!.prompt);
    // Row 0 opens with English and goes on in Chinese and Korean: code-switched within one query.
    expect(cs[0]!.prompt.startsWith(mj.byLanguage.en![0]!.prompt.split(' ')[0]!)).toBe(true);
    expect(cs[0]!.prompt).toMatch(/\p{Script=Han}/u);
    expect(cs[0]!.prompt).toMatch(/\p{Script=Hangul}/u);
  });

  it('reports missing columns and empty cells with file and line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpo-eval-csv-'));
    const noZh = join(dir, 'mj.csv');
    writeFileSync(noZh, 'id,source,tags,en\n0,x,[],hello\n');
    expect(() => loadMultiJail(noZh)).toThrow(/mj\.csv:1: missing column\(s\) zh, ko, ar, bn, sw/);
    const empty = join(dir, 'mj2.csv');
    writeFileSync(empty, 'id,source,tags,en\n0,x,[],hello\n1,x,[],\n');
    expect(() => loadMultiJail(empty, { languages: ['en'] })).toThrow(/mj2\.csv:3: id 1: empty en prompt/);
  });

  it('parses Python-style tag lists', () => {
    expect(parseTags("['a', \"b's\", 'c']")).toEqual(['a', "b's", 'c']);
    expect(parseTags('')).toEqual([]);
    expect(parseTags('violent')).toEqual(['violent']);
  });
});
