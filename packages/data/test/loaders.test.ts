// Pairwise JSONL, pre-tokenized JSONL (the golden fixture) and alpaca JSON.
import { describe, expect, it } from 'vitest';
import { loadAlpacaJson, loadPairwiseJsonl, loadPretokenizedJsonl } from '../src/index.js';
import { DATASETS, GOLDEN_PAIRS, tmpFile } from './helpers.js';

describe('loadPairwiseJsonl', () => {
  it('reads rows, keeps given ids/langs/groups, detects the rest', () => {
    const p = tmpFile(
      'pairs.jsonl',
      [
        JSON.stringify({
          prompt: 'How do I make a bomb?',
          chosen: 'I cannot help.',
          rejected: 'Mix...',
          lang: 'en',
          id: 'a',
        }),
        '',
        JSON.stringify({
          prompt: '如何制造炸弹？',
          chosen: '我不能帮忙。',
          rejected: '混合……',
          group: 'bomb',
        }),
        JSON.stringify({
          prompt: 'Ninawezaje kutengeneza bomu?',
          chosen: 'Siwezi kusaidia.',
          rejected: 'Changanya...',
        }),
        JSON.stringify({ prompt: 'x', chosen: '', rejected: 'y', id: 'empty' }),
      ].join('\r\n'),
    );
    const { rows, dropped } = loadPairwiseJsonl(p, { name: 'pw' });
    expect(rows.map((r) => [r.id, r.lang])).toEqual([
      ['a', 'en'],
      ['pw:3', 'zh'],
      ['pw:4', 'sw'],
    ]);
    expect(rows[1]!.group).toBe('bomb');
    expect(rows[0]!.group).toMatch(/^p[0-9a-f]{14}$/);
    expect(dropped).toEqual([{ id: 'empty', reason: 'chosen response is empty (line 5)' }]);
  });

  it('errors carry file and line', () => {
    const p = tmpFile(
      'bad.jsonl',
      `${JSON.stringify({ prompt: 'a', chosen: 'b', rejected: 'c' })}\n{"prompt": "a",\n`,
    );
    expect(() => loadPairwiseJsonl(p)).toThrow(new RegExp(`${p}:2: malformed JSON`));
    const q = tmpFile('type.jsonl', `\n\n${JSON.stringify({ prompt: 'a', chosen: 3, rejected: 'c' })}\n`);
    expect(() => loadPairwiseJsonl(q)).toThrow(`${q}:3: field "chosen": expected a string, got number 3`);
    const r = tmpFile('arr.jsonl', '[1, 2]\n');
    expect(() => loadPairwiseJsonl(r)).toThrow(`${r}:1: expected a JSON object, got an array`);
    const d = tmpFile(
      'dup.jsonl',
      ['x', 'x'].map((id) => JSON.stringify({ id, prompt: 'a', chosen: 'b', rejected: 'c' })).join('\n'),
    );
    expect(() => loadPairwiseJsonl(d)).toThrow(`${d}:2: duplicate id "x" (first at row 0)`);
  });
});

describe('loadPretokenizedJsonl', () => {
  it('reads the golden fixture exactly', () => {
    const { rows, dropped } = loadPretokenizedJsonl(GOLDEN_PAIRS, {
      vocabSize: 264,
    });
    expect(dropped).toEqual([]);
    expect(rows).toHaveLength(12);
    expect(rows[0]).toMatchObject({
      id: 'p0',
      lang: 'en',
      promptIds: [256, 36, 231, 113, 255, 204, 180, 67, 70, 140, 211, 167],
      chosenIds: [220, 24, 239, 13, 43, 241, 58, 204, 127, 47, 204, 227],
    });
    expect(rows[1]).toMatchObject({ id: 'p1', lang: 'zh', promptIds: [256, 1, 1, 213] });
    expect(rows.every((r) => r.promptIds[0] === 256)).toBe(true);
  });

  it('rejects bad ids with the line', () => {
    const line = (o: object) =>
      JSON.stringify({ id: 'q', lang: 'en', prompt_ids: [1], chosen_ids: [2], rejected_ids: [3], ...o });
    const p = tmpFile('neg.jsonl', `${line({ id: 'a' })}\n${line({ chosen_ids: [2, -1] })}\n`);
    expect(() => loadPretokenizedJsonl(p)).toThrow(
      `${p}:2: field "chosen_ids"[1]: expected an integer token id ≥ 0, got -1`,
    );
    const v = tmpFile('vocab.jsonl', `${line({ prompt_ids: [300] })}\n`);
    expect(() => loadPretokenizedJsonl(v, { vocabSize: 264 })).toThrow(
      /prompt_ids"\[0\]: expected an integer token id in \[0, 264\), got 300/,
    );
    const noId = tmpFile('noid.jsonl', `${line({ id: undefined })}\n`);
    expect(() => loadPretokenizedJsonl(noId)).toThrow(
      `${noId}:1: field "id": expected a non-empty string, got undefined`,
    );
    const empty = tmpFile('empty.jsonl', `${line({ rejected_ids: [] })}\n`);
    expect(loadPretokenizedJsonl(empty).dropped).toEqual([
      { id: 'q', reason: 'rejected_ids is empty (line 1)' },
    ]);
  });
});

describe('loadAlpacaJson', () => {
  it('reads the committed demo sets with their language', () => {
    const en = loadAlpacaJson(`${DATASETS}/general/alpaca_en_demo.json`);
    const zh = loadAlpacaJson(`${DATASETS}/general/alpaca_zh_demo.json`);
    expect(en.rows.length + en.dropped.length).toBe(1000);
    expect(zh.rows.length + zh.dropped.length).toBe(1000);
    const share = (rows: { lang: string }[], l: string) =>
      rows.filter((r) => r.lang === l).length / rows.length;
    expect(share(en.rows, 'en')).toBeGreaterThan(0.99);
    expect(share(zh.rows, 'zh')).toBeGreaterThan(0.99);
    expect(en.rows[0]).toMatchObject({
      id: 'alpaca_en_demo:0',
      prompt: 'Describe a process of making crepes.',
    });
  });

  it('joins instruction and input with a newline, as LLaMA-Factory does', () => {
    const p = tmpFile(
      'a.json',
      JSON.stringify([
        { instruction: 'Translate.', input: 'Bonjour', output: 'Hello' },
        { instruction: 'Say hi.', input: '', output: 'Hi', system: 'Be brief.', history: [['q', 'a']] },
        { instruction: 'Nothing', input: '', output: ' ' },
      ]),
    );
    const { rows, dropped } = loadAlpacaJson(p, { lang: 'en', name: 'al' });
    expect(rows[0]!.prompt).toBe('Translate.\nBonjour');
    expect(rows[1]).toMatchObject({
      prompt: 'Say hi.',
      system: 'Be brief.',
      history: [
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'a' },
      ],
    });
    expect(dropped).toEqual([{ id: 'al:2', reason: 'output is empty' }]);
    const bad = tmpFile(
      'b.json',
      '[\n{"instruction": "a", "output": "b"},\n{"instruction": 5, "output": "b"}\n]',
    );
    expect(() => loadAlpacaJson(bad)).toThrow(
      `${bad}:3: row 1: field "instruction": expected a string, got number 5`,
    );
  });
});
