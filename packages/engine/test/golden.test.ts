// Golden test: scores of an independent float64 reference forward pass over a tiny random Llama
// checkpoint (test/fixtures/golden-llama; datasets/README.md lists its files and sha256s).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../src/index.js';
import { goldenDir } from './helpers.js';

interface Side {
  sumLogp: number;
  tokens: number;
  avgLogp: number;
  lastHidden: number[];
  meanHidden: number[];
}
interface Expected {
  examples: { id: string; lang: string; chosen: Side; rejected: Side; rg: number }[];
  per_language_rg: Record<string, number>;
  logits?: unknown;
}
interface Pair {
  id: string;
  lang: string;
  prompt_ids: number[];
  chosen_ids: number[];
  rejected_ids: number[];
}

describe('golden-llama fixture', () => {
  let model: Model;
  let expected: Expected;
  let pairs: Pair[];
  beforeAll(async () => {
    model = await Model.load(goldenDir, { threads: 2 });
    expected = JSON.parse(readFileSync(resolve(goldenDir, 'expected.json'), 'utf8')) as Expected;
    pairs = readFileSync(resolve(goldenDir, 'pairs.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Pair);
  });
  afterAll(() => model?.dispose());

  it('matches sumLogp, avgLogp, rg and hidden states of every example within 1e-4', async () => {
    expect(pairs.length).toBe(expected.examples.length);
    const sequences = pairs.flatMap((p) => [
      [...p.prompt_ids, ...p.chosen_ids],
      [...p.prompt_ids, ...p.rejected_ids],
    ]);
    const promptLengths = pairs.flatMap((p) => [p.prompt_ids.length, p.prompt_ids.length]);
    const r = await model.score({ sequences, promptLengths }, { pooling: ['last', 'mean'] });
    const D = r.hiddenSize;
    let worst = 0;
    pairs.forEach((p, i) => {
      const ex = expected.examples[i]!;
      expect(ex.id).toBe(p.id);
      const avg: number[] = [];
      (['chosen', 'rejected'] as const).forEach((side, k) => {
        const row = 2 * i + k;
        const e = ex[side];
        expect(r.tokens[row]).toBe(e.tokens);
        const a = r.sumLogp[row]! / r.tokens[row]!;
        avg.push(a);
        expect(Math.abs(a - e.avgLogp)).toBeLessThan(1e-4);
        expect(Math.abs(r.sumLogp[row]! - e.sumLogp)).toBeLessThan(1e-4 * Math.max(1, Math.abs(e.sumLogp)));
        worst = Math.max(worst, Math.abs(a - e.avgLogp));
        for (let j = 0; j < e.lastHidden.length; j++) {
          expect(Math.abs(r.lastHidden![row * D + j]! - e.lastHidden[j]!)).toBeLessThan(1e-4);
          expect(Math.abs(r.meanHidden![row * D + j]! - e.meanHidden[j]!)).toBeLessThan(1e-4);
        }
      });
      expect(Math.abs(avg[0]! - avg[1]! - ex.rg)).toBeLessThan(1e-4);
    });
    // per-language rg
    const byLang = new Map<string, number[]>();
    pairs.forEach((p, i) => {
      const rg = r.sumLogp[2 * i]! / r.tokens[2 * i]! - r.sumLogp[2 * i + 1]! / r.tokens[2 * i + 1]!;
      byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), rg]);
    });
    for (const [lang, v] of byLang) {
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      expect(Math.abs(mean - expected.per_language_rg[lang]!)).toBeLessThan(1e-4);
    }
    console.log(`golden: worst |avgLogp error| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-4);
  });

  it('matches the recorded last-position logits', async () => {
    const recs = expected.logits as { ids: number[]; last_row_first16: number[] }[];
    expect(recs.length).toBeGreaterThan(0);
    for (const rec of recs) {
      const lg = await model.logits(rec.ids);
      expect(lg.length).toBe(model.config.vocabSize);
      rec.last_row_first16.forEach((v, j) => {
        expect(Math.abs(lg[j]! - v)).toBeLessThan(1e-4);
      });
    }
  });

  it('matches with one thread and with each sequence scored alone', async () => {
    const p = pairs[0]!;
    const seq = [...p.prompt_ids, ...p.chosen_ids];
    model.setThreads(1);
    const r = await model.score({ sequences: [seq], promptLengths: [p.prompt_ids.length] });
    model.setThreads(2);
    expect(Math.abs(r.sumLogp[0]! - expected.examples[0]!.chosen.sumLogp)).toBeLessThan(1e-3);
  });
});
