// The aggregation behind `mpo reproduce`, against values worked by hand.
import { describe, expect, it } from 'vitest';
import { type Figure, reproduceTables, type SeedResult } from '../src/report/reproduce-tables.js';
import { formatSummary, pearson, summarize } from '../src/report/stats.js';

describe('summarize (mean ± sample sd)', () => {
  it('works [2, 4, 4, 4, 5, 5, 7, 9] by hand: mean 5, Σ(x−5)² = 32, sd = sqrt(32/7)', () => {
    const s = summarize([2, 4, 4, 4, 5, 5, 7, 9])!;
    expect(s.mean).toBe(5);
    expect(s.sd).toBeCloseTo(Math.sqrt(32 / 7), 12); // 2.138…, not the population 2.0
    expect(s.n).toBe(8);
  });
  it('has no sd for one value and no summary for none; non-finite values are left out', () => {
    expect(summarize([0.25])).toEqual({ mean: 0.25, sd: null, n: 1 });
    expect(summarize([])).toBeNull();
    expect(summarize([1, Number.NaN, 3])).toEqual({ mean: 2, sd: Math.SQRT2, n: 2 });
  });
  it('formats as mean ± sd, scaled for percentages', () => {
    expect(formatSummary({ mean: 0.875, sd: 0.0625, n: 3 }, 1, 100)).toBe('87.5 ± 6.3');
    expect(formatSummary({ mean: 1.5, sd: null, n: 1 }, 3)).toBe('1.500');
    expect(formatSummary(null, 3)).toBe('–');
  });
});

describe('pearson', () => {
  it('x = 1,2,3 against y = 2,4,7: x̄ 2, ȳ 13/3, Sxy 5, Sxx 2, Syy 38/3, r = 5/sqrt(76/3)', () => {
    expect(pearson([1, 2, 3], [2, 4, 7])).toBeCloseTo(5 / Math.sqrt(76 / 3), 12); // 0.9934
  });
  it('is −1 for a perfect decreasing line and undefined for a constant side or fewer than 3 pairs', () => {
    expect(pearson([1, 2, 3, 4], [8, 6, 4, 2])).toBeCloseTo(-1, 12);
    expect(pearson([1, 2, 3], [5, 5, 5])).toBeNull();
    expect(pearson([1, 2], [3, 4])).toBeNull();
    expect(() => pearson([1, 2, 3], [1, 2])).toThrow(/3 x values against 2/);
  });
});

const figs = (lang: Record<string, [rg: number, asr: number, refused: number, ppl: number]>): Figure[] =>
  Object.entries(lang).flatMap(([l, [rg, asr, refused, ppl]]) => [
    { benchmark: 'reward-gap', language: l, metric: 'rg', value: rg },
    { benchmark: 'multijail', language: l, metric: 'asr', value: asr },
    { benchmark: 'utility', language: l, metric: 'refused', value: refused },
    { benchmark: 'utility', language: l, metric: 'ppl', value: ppl },
  ]);
const trial = (seed: number, learningRate: number, f: Figure[], status = 'SUCCEEDED'): SeedResult => ({
  seed,
  learningRate,
  status,
  figures: f,
});

describe('reproduceTables', () => {
  const languages = ['en', 'xa', 'xb'];
  const base = figs({ en: [2, 0.1, 0.1, 10], xa: [0, 0.9, 0, 20], xb: [-1, 0.8, 0, 30] });
  const tables = reproduceTables({
    dominant: 'en',
    languages,
    base,
    variants: [
      {
        key: 'mpo',
        label: 'MPO',
        table: 'methods',
        runId: 'r1',
        trials: [
          // lr 1e-4: seeds 1, 2 and a failed seed 3 (left out of every mean).
          trial(1, 1e-4, figs({ en: [2, 0.1, 0.1, 10], xa: [1, 0.5, 0, 20], xb: [0, 0.7, 0, 30] })),
          trial(2, 1e-4, figs({ en: [2, 0.1, 0.1, 12], xa: [2, 0.3, 0, 22], xb: [1, 0.5, 0, 32] })),
          trial(3, 1e-4, [], 'FAILED'),
          // lr 3e-4: lower ASR, but it refuses every harmless prompt: not chosen.
          trial(1, 3e-4, figs({ en: [5, 0, 1, 50], xa: [5, 0, 1, 60], xb: [5, 0, 1, 70] })),
          trial(2, 3e-4, figs({ en: [5, 0, 1, 50], xa: [5, 0.1, 1, 60], xb: [5, 0, 1, 70] })),
        ],
      },
    ],
  });

  it('summarises each language over the seeds that succeeded', () => {
    const arm = tables.arms.find((a) => a.learningRate === 1e-4)!;
    expect(arm.seeds).toEqual([1, 2]);
    expect(arm.failed).toBe(1);
    // xa ASR 0.5 and 0.3: mean 0.4, sd sqrt(((0.1)² + (0.1)²)/1) = 0.1414…
    expect(arm.cells.xa!.asr!.mean).toBeCloseTo(0.4, 12);
    expect(arm.cells.xa!.asr!.sd).toBeCloseTo(Math.SQRT2 / 10, 12);
    expect(arm.cells.en!.ppl).toEqual({ mean: 11, sd: Math.SQRT2, n: 2 });
  });

  it('correlates RG with ASR across languages per seed, and for the base model', () => {
    // Base: RG 2, 0, −1 against ASR 0.1, 0.9, 0.8 — x̄ 1/3, ȳ 0.6; Sxy = −5/6 − 0.1 − 0.8/3 = −1.2, Sxx = 14/3, Syy = 0.38.
    expect(tables.base.correlation).toBeCloseTo(-1.2 / Math.sqrt((14 / 3) * 0.38), 12);
    const arm = tables.arms.find((a) => a.learningRate === 1e-4)!;
    // Seed 1: RG 2,1,0 against ASR 0.1,0.5,0.7 → r = −0.9820; seed 2: 2,2,1 against 0.1,0.3,0.5 → −0.8660.
    const r1 = pearson([2, 1, 0], [0.1, 0.5, 0.7])!;
    const r2 = pearson([2, 2, 1], [0.1, 0.3, 0.5])!;
    expect(r1).toBeCloseTo(-0.98198, 4);
    expect(r2).toBeCloseTo(-0.86603, 4);
    expect(arm.correlation!.mean).toBeCloseTo((r1 + r2) / 2, 12);
    expect(arm.correlation!.sd).toBeCloseTo(Math.abs(r1 - r2) / Math.SQRT2, 12);
  });

  it('chooses the learning rate by target ASR + harmless refusals, so refusing everything does not win', () => {
    // 1e-4: targets' ASR means 0.4 and 0.6, refusals 0 → 0.5; 3e-4: ASR 0.05 and 0, refusals 1 → 1.025.
    const [a, b] = tables.arms;
    expect(a!.selection).toBeCloseTo(0.5, 12);
    expect(b!.selection).toBeCloseTo(1.025, 12);
    expect(tables.selected.map((s) => s.learningRate)).toEqual([1e-4]);
  });
});

describe('the perplexity guard of the learning-rate choice', () => {
  const base = figs({ en: [2, 0.1, 0, 10], xa: [0, 0.9, 0, 20], xb: [-1, 0.8, 0, 30] });
  const input = (trials: SeedResult[]) => ({
    dominant: 'en',
    languages: ['en', 'xa', 'xb'],
    base,
    variants: [{ key: 'dpo', label: 'DPO', table: 'methods' as const, runId: 'r', trials }],
  });
  // lr 1e-4: perplexity ×1.2 in every language (ratio 1.2), target ASR 0.6 → selection 0.6.
  const gentle = trial(1, 1e-4, figs({ en: [2, 0.1, 0, 12], xa: [1, 0.6, 0, 24], xb: [1, 0.6, 0, 36] }));
  // lr 3e-4: ratios 1, 2, 8 → geometric mean 16^(1/3) = 2.5198; target ASR 0.2 → selection 0.2.
  const harsh = trial(1, 3e-4, figs({ en: [2, 0.1, 0, 10], xa: [3, 0.2, 0, 40], xb: [3, 0.2, 0, 240] }));

  it('is the geometric mean over languages of perplexity after over before', () => {
    const [a, b] = reproduceTables(input([gentle, harsh])).arms;
    expect(a!.pplRatio).toBeCloseTo(1.2, 12);
    expect(b!.pplRatio).toBeCloseTo(Math.cbrt(16), 12);
  });

  it('passes over a learning rate that more than doubles perplexity, unless the guard allows it', () => {
    expect(reproduceTables(input([gentle, harsh])).selected.map((a) => a.learningRate)).toEqual([1e-4]);
    expect(reproduceTables(input([gentle, harsh]), 3).selected.map((a) => a.learningRate)).toEqual([3e-4]);
  });

  it('takes the lowest ratio when no learning rate is within, and never one without figures', () => {
    // Both over ×2: ratios 3 (selection 0.6) and 4 (selection 0.2) → the ratio-3 one.
    const over3 = trial(1, 1e-4, figs({ en: [2, 0.1, 0, 30], xa: [1, 0.6, 0, 60], xb: [1, 0.6, 0, 90] }));
    const over4 = trial(1, 3e-4, figs({ en: [2, 0.1, 0, 40], xa: [3, 0.2, 0, 80], xb: [3, 0.2, 0, 120] }));
    const t = reproduceTables(input([over3, over4]));
    expect(t.selected.map((a) => a.learningRate)).toEqual([1e-4]);
    expect(t.selected[0]!.pplRatio).toBeCloseTo(3, 12);
    // A learning rate whose only seed failed has no ratio (it would pass the guard), but no figures either.
    const failed = trial(1, 1e-4, [], 'FAILED');
    expect(reproduceTables(input([failed, harsh])).selected.map((a) => a.learningRate)).toEqual([3e-4]);
  });
});
