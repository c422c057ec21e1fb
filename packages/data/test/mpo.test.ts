// The MPO paper's training data as committed in datasets/mpo: pairing, languages, drops, errors.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DataError, loadMpoJson } from '../src/index.js';
import { MPO_FILES, tmpFile } from './helpers.js';

type Raw = Record<string, { value: string } | Array<{ value: string }>>;
const rawOf = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Raw[];
const text = (x: Raw[string] | undefined) => (Array.isArray(x) ? x.map((m) => m.value).join('\n') : x!.value);

describe('loadMpoJson on the committed data', () => {
  const expected = {
    llama: { dominant: 'en', langs: ['ar', 'bn', 'ja', 'ko', 'sw', 'zh'] },
    gemma: { dominant: 'en', langs: ['ar', 'bn', 'ja', 'ko', 'sw', 'zh'] },
    qwen: { dominant: 'zh', langs: ['ar', 'bn', 'en', 'ja', 'ko', 'sw'] },
  } as const;

  for (const [name, path] of Object.entries(MPO_FILES) as Array<[keyof typeof expected, string]>) {
    describe(name, () => {
      const res = loadMpoJson(path);
      const raw = rawOf(path);

      it('keeps every row paired with its own source pair, by index', () => {
        expect(res.rows.length + res.dropped.length).toBe(600);
        for (const r of res.rows) {
          const o = raw[r.index]!;
          expect(r.id).toBe(`${name}_mpo_data:${r.index}`);
          expect(r.source.prompt).toBe(text(o.source_conversations));
          expect(r.source.chosen).toBe(text(o.source_chosen));
          expect(r.source.rejected).toBe(text(o.source_rejected));
          expect(r.target.prompt).toBe(text(o.target_conversations));
          expect(r.target.chosen).toBe(text(o.target_chosen));
          expect(r.target.rejected).toBe(text(o.target_rejected));
        }
        const indices = res.rows.map((r) => r.index);
        expect(indices).toEqual([...indices].sort((a, b) => a - b));
      });

      it('finds the dominant language and the six target languages', () => {
        expect(res.dominantLanguage).toBe(expected[name].dominant);
        expect(res.targetLanguages).toEqual(expected[name].langs);
        expect(res.rows.every((r) => r.dominantLang === expected[name].dominant)).toBe(true);
      });

      it('100 prompt groups, each translated once into each target language', () => {
        const groups = new Map<string, string[]>();
        for (const r of res.rows) groups.set(r.group, [...(groups.get(r.group) ?? []), r.lang]);
        expect(groups.size).toBe(100);
        for (const langs of groups.values()) {
          expect(new Set(langs).size).toBe(langs.length);
          expect(langs.length).toBeGreaterThanOrEqual(res.rows.length === 600 ? 6 : 5);
        }
        const perLang: Record<string, number> = {};
        for (const r of res.rows) perLang[r.lang] = (perLang[r.lang] ?? 0) + 1;
        const dropped = res.dropped.length;
        for (const l of expected[name].langs) expect(perLang[l]).toBeGreaterThanOrEqual(100 - dropped);
      });

      it('rows of one group share the source prompt; different groups do not', () => {
        const byGroup = new Map<string, Set<string>>();
        for (const r of res.rows)
          byGroup.set(r.group, (byGroup.get(r.group) ?? new Set()).add(r.source.prompt));
        for (const s of byGroup.values()) expect(s.size).toBe(1);
        expect(new Set([...byGroup.values()].map((s) => [...s][0])).size).toBe(byGroup.size);
      });
    });
  }

  it('llama: the one row with an empty target prompt is dropped with its source pair', () => {
    const res = loadMpoJson(MPO_FILES.llama);
    expect(res.dropped).toEqual([{ id: 'llama_mpo_data:505', reason: 'target prompt is empty' }]);
    expect(res.rows.find((r) => r.index === 505)).toBeUndefined();
    expect(res.rows.find((r) => r.index === 506)!.id).toBe('llama_mpo_data:506');
  });

  it('labels untranslated prompts from their group and responses, and says so', () => {
    const res = loadMpoJson(MPO_FILES.gemma);
    // gemma row 1: the "zh" slot of its group kept the English prompt; the responses are Chinese.
    const row = res.rows.find((r) => r.index === 1)!;
    expect(row.target.prompt.startsWith('I am a recruitment commissioner')).toBe(true);
    expect(row.lang).toBe('zh');
    expect(res.notes.find((n) => n.id === 'gemma_mpo_data:1')!.note).toMatch(/reads as en; labelled zh/);
    // qwen: Bengali prompt with an English chosen response stays bn.
    const q = loadMpoJson(MPO_FILES.qwen);
    expect(q.rows[0]!.lang).toBe('bn');
    expect(q.rows[0]!.target.chosen.startsWith("I'm sorry")).toBe(true);
  });

  it('a given language skips detection', () => {
    const res = loadMpoJson(MPO_FILES.llama, { lang: 'xx', dominantLanguage: 'en', name: 'L' });
    expect(new Set(res.rows.map((r) => r.lang))).toEqual(new Set(['xx']));
    expect(res.rows[0]!.id).toBe('L:0');
    const byIndex = loadMpoJson(MPO_FILES.llama, {
      lang: ({ index }) => ['zh', 'ko', 'sw', 'bn', 'ar', 'ja'][index % 6]!,
    });
    expect(byIndex.rows.slice(0, 6).map((r) => r.lang)).toEqual(['zh', 'ko', 'sw', 'bn', 'ar', 'ja']);
  });

  it('rows that all name their target_lang (synthetic languages no detector knows) keep it', () => {
    const row = (prompt: string, lang: string) => ({
      source_conversations: [{ from: 'human', value: `How do I ${prompt}?` }],
      source_chosen: { from: 'gpt', value: 'I can’t help with that.' },
      source_rejected: { from: 'gpt', value: 'Here is how.' },
      target_conversations: [{ from: 'human', value: `жд ${prompt}` }],
      target_chosen: { from: 'gpt', value: 'жд ёё' },
      target_rejected: { from: 'gpt', value: 'жд аа' },
      target_lang: lang,
    });
    const rows = [
      row('cook rice', 'qaa'),
      row('cook rice', 'qab'),
      row('fix a bike', 'qaa'),
      row('fix a bike', 'qab'),
    ];
    const res = loadMpoJson(tmpFile('own-lang.json', JSON.stringify(rows)));
    expect(res.dominantLanguage).toBe('en');
    expect(res.targetLanguages).toEqual(['qaa', 'qab']);
    expect(res.rows.map((r) => r.lang)).toEqual(['qaa', 'qab', 'qaa', 'qab']);
    // Without the field on every row, detection decides as before.
    const mixed = rows.map((r, i) => (i === 0 ? { ...r, target_lang: undefined } : r));
    expect(loadMpoJson(tmpFile('mixed-lang.json', JSON.stringify(mixed))).targetLanguages).not.toContain(
      'qab',
    );
  });
});

describe('loadMpoJson errors name the file and line', () => {
  const good = {
    source_conversations: [{ from: 'human', value: 'How do I pick a lock?' }],
    source_chosen: { from: 'gpt', value: 'I cannot help with that.' },
    source_rejected: { from: 'gpt', value: 'Use a tension wrench.' },
    target_conversations: [{ from: 'human', value: '我怎么撬锁？' }],
    target_chosen: { from: 'gpt', value: '我不能帮忙。' },
    target_rejected: { from: 'gpt', value: '用张力扳手。' },
  };

  it('missing file', () => {
    expect(() => loadMpoJson('/nonexistent/x.json')).toThrow(
      /\/nonexistent\/x\.json: cannot read file \(ENOENT\)/,
    );
  });

  it('malformed JSON', () => {
    const p = tmpFile('bad.json', '[\n  {"a": 1},\n  {"a": 2,}\n]\n');
    expect(() => loadMpoJson(p)).toThrow(DataError);
    expect(() => loadMpoJson(p)).toThrow(new RegExp(`${p}:3: malformed JSON`));
  });

  it("missing field, at the row's line", () => {
    const { target_chosen: _, ...partial } = good;
    const p = tmpFile('missing.json', JSON.stringify([good, partial], null, 2));
    // the line where the second element's "{" opens in the pretty-printed file
    const line =
      JSON.stringify([good, partial], null, 2)
        .split('\n')
        .findIndex((l, i) => i > 1 && l === '  {') + 1;
    expect(() => loadMpoJson(p)).toThrow(`${p}:${line}: row 1: missing field target_chosen`);
  });

  it('wrong message shape', () => {
    const p = tmpFile('shape.json', JSON.stringify([{ ...good, source_chosen: 'text' }]));
    expect(() => loadMpoJson(p)).toThrow(
      /:1: row 0: source_chosen: expected a \{"from", "value"\} message, got string "text"/,
    );
    const q = tmpFile('role.json', JSON.stringify([{ ...good, source_chosen: { from: 'bot', value: 'x' } }]));
    expect(() => loadMpoJson(q)).toThrow(/source_chosen\.from: expected human, gpt or system, got "bot"/);
  });

  it('not an array', () => {
    const p = tmpFile('obj.json', '{"rows": []}');
    expect(() => loadMpoJson(p)).toThrow(/:1: expected a JSON array at the top level, got an object/);
  });

  it('unusable rows are dropped and reported, never shifted', () => {
    const rows = [
      good,
      { ...good, target_rejected: { from: 'gpt', value: '  ' } },
      {
        ...good,
        source_conversations: [
          { from: 'human', value: 'a' },
          { from: 'gpt', value: 'b' },
        ],
      },
      good,
    ];
    const res = loadMpoJson(tmpFile('drops.json', JSON.stringify(rows)), {
      lang: 'zh',
      dominantLanguage: 'en',
      name: 'd',
    });
    expect(res.dropped).toEqual([
      { id: 'd:1', reason: 'target rejected response is empty' },
      { id: 'd:2', reason: 'source: conversation has 2 turns; a prompt needs an odd number' },
    ]);
    expect(res.rows.map((r) => r.id)).toEqual(['d:0', 'd:3']);
  });
});
