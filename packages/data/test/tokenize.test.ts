// Tokenizing the real MPO data with a byte-level tokenizer: alignment, truncation, drops.
import { describe, expect, it } from 'vitest';
import {
  klPartners,
  loadMpoJson,
  loadPairwiseJsonl,
  type MpoRow,
  plainEncoders,
  tokenizeMpo,
  tokenizePairwise,
  tokenizeSft,
  withKlCompletions,
} from '../src/index.js';
import { byteTokenizer, MPO_FILES, tmpFile } from './helpers.js';

const enc = plainEncoders(byteTokenizer);
const bytes = (t: string) => [...Buffer.from(t, 'utf8')];

describe('tokenizeMpo', () => {
  const loaded = loadMpoJson(MPO_FILES.qwen);

  it('keeps source and target of each row together, within the cutoff', () => {
    const cutoff = 384;
    const { rows, dropped } = tokenizeMpo(loaded.rows, { ...enc, cutoffLen: cutoff });
    expect(rows.length + dropped.length).toBe(loaded.rows.length);
    const ids = new Set(rows.map((r) => r.id));
    for (const d of dropped) expect(ids.has(d.id)).toBe(false);
    const byId = new Map(loaded.rows.map((r) => [r.id, r]));
    for (const r of rows) {
      const src = byId.get(r.id)!;
      for (const [pair, text] of [
        [r.source, src.source],
        [r.target, src.target],
      ] as const) {
        const full = {
          p: [256, ...bytes(text.prompt)],
          c: [...bytes(text.chosen), 257],
          rj: [...bytes(text.rejected), 257],
        };
        // heads of this row's own texts: a shifted row would fail here
        expect(pair.promptIds).toEqual(full.p.slice(0, pair.promptIds.length));
        expect(pair.chosenIds).toEqual(full.c.slice(0, pair.chosenIds.length));
        expect(pair.rejectedIds).toEqual(full.rj.slice(0, pair.rejectedIds.length));
        expect(
          pair.promptIds.length + Math.max(pair.chosenIds.length, pair.rejectedIds.length),
        ).toBeLessThanOrEqual(cutoff);
        expect(pair.chosenIds.length).toBeGreaterThanOrEqual(1);
      }
      expect(r.lang).toBe(src.lang);
      expect(r.group).toBe(src.group);
    }
    expect(rows.some((r) => r.truncated?.target)).toBe(true);
  });

  it('a prompt over the budget drops the whole row, reported with the side', () => {
    // Bengali prompts take ~3 bytes a character: at a cutoff of 160 some target prompts alone overflow
    const { rows, dropped } = tokenizeMpo(loaded.rows, { ...enc, cutoffLen: 160 });
    expect(dropped.length).toBeGreaterThan(0);
    for (const d of dropped)
      expect(d.reason).toMatch(/^(source|target): prompt alone \(\d+ tokens\) fills the cutoff of 160/);
    expect(rows.length + dropped.length).toBe(loaded.rows.length);
    // with promptOverflow 'truncate' nothing is dropped
    expect(tokenizeMpo(loaded.rows, { ...enc, cutoffLen: 160, promptOverflow: 'truncate' }).dropped).toEqual(
      [],
    );
  });

  it('hand-made row: unusable target drops the source too', () => {
    const row: MpoRow = {
      id: 'h:0',
      index: 0,
      lang: 'zh',
      dominantLang: 'en',
      group: 'g',
      source: { prompt: 'Hi', chosen: 'No.', rejected: 'Yes.', history: [] },
      target: { prompt: '你好', chosen: '  ', rejected: '是', history: [] },
    };
    expect(tokenizeMpo([row], { ...enc, cutoffLen: 64 })).toEqual({
      rows: [],
      dropped: [{ id: 'h:0', reason: 'target: chosen response is empty' }],
    });
    const ok = tokenizeMpo([{ ...row, target: { ...row.target, chosen: '不' } }], { ...enc, cutoffLen: 64 });
    expect(ok.rows[0]!.source).toEqual({
      promptIds: [256, 72, 105],
      chosenIds: [78, 111, 46, 257],
      rejectedIds: [89, 101, 115, 46, 257],
    });
    expect(ok.rows[0]!.target.chosenIds).toEqual([...bytes('不'), 257]);
  });

  it('passes history, system and language to the prompt encoder', () => {
    const seen: unknown[] = [];
    const row: MpoRow = {
      id: 'h:1',
      index: 1,
      lang: 'ko',
      dominantLang: 'en',
      group: 'g',
      source: { prompt: 'q', chosen: 'a', rejected: 'b', history: [], system: 'S' },
      target: { prompt: 'q2', chosen: 'a', rejected: 'b', history: [{ role: 'user', content: 'h' }] },
    };
    tokenizeMpo([row], {
      encodePrompt: (p, ctx) => {
        seen.push([p, ctx]);
        return [1];
      },
      encodeResponse: () => [2],
      cutoffLen: 8,
    });
    expect(seen).toEqual([
      ['q', { history: [], system: 'S', lang: 'en' }],
      ['q2', { history: [{ role: 'user', content: 'h' }], lang: 'ko' }],
    ]);
  });
});

describe('tokenizePairwise / tokenizeSft / KTO partners', () => {
  const p = tmpFile(
    'p.jsonl',
    ['a', 'b', 'c']
      .map((x) => JSON.stringify({ id: x, prompt: `p${x}`, chosen: `c${x}`, rejected: `r${x}`, lang: 'en' }))
      .join('\n'),
  );
  const { rows } = tokenizePairwise(loadPairwiseJsonl(p).rows, { ...enc, cutoffLen: 32 });

  it('pairwise rows', () => {
    expect(rows.map((r) => r.id)).toEqual(['a', 'b', 'c']);
    expect(rows[0]).toMatchObject({
      promptIds: [256, 112, 97],
      chosenIds: [99, 97, 257],
      rejectedIds: [114, 97, 257],
    });
  });

  it('sft rows', () => {
    const out = tokenizeSft(
      [
        { id: 's', lang: 'en', group: 'g', prompt: 'hello', response: 'world', history: [] },
        { id: 't', lang: 'en', group: 'g', prompt: 'x', response: ' ', history: [] },
      ],
      { ...enc, cutoffLen: 8 },
    );
    // prompt 6 ids (BOS + 5 bytes), response 6 (5 bytes + EOS), both ≥ 8/2 → response trunc(8·6/12) = 4, prompt 4
    expect(out.rows[0]).toMatchObject({
      promptIds: [256, 104, 101, 108],
      responseIds: [119, 111, 114, 108],
      truncated: true,
    });
    expect(out.dropped).toEqual([{ id: 't', reason: 'response is empty' }]);
  });

  it('KTO mismatched completions rotate within chunks', () => {
    expect(klPartners(5, 2)).toEqual([1, 0, 3, 2, 4]);
    expect(klPartners(3, 3)).toEqual([2, 0, 1]);
    const kl = withKlCompletions(rows, { chunkSize: 3, cutoffLen: 5 });
    expect(kl.map((r) => r.klPartner)).toEqual(['c', 'a', 'b']);
    // prompt of a (3 ids) + chosen of c cut to 5 − 3 = 2 ids
    expect(kl[0]!.klIds).toEqual([99, 99]);
  });
});
