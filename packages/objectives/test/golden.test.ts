// The reward-gap metric against the golden fixture's independently computed values (packages/engine/test/fixtures/golden-llama).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { objectives } from '../src/index.js';
import { scores } from './helpers.js';

interface Side {
  sumLogp: number;
  tokens: number;
  avgLogp: number;
}
const expected = JSON.parse(
  readFileSync(resolve(import.meta.dirname, '../../engine/test/fixtures/golden-llama/expected.json'), 'utf8'),
) as {
  examples: Array<{ lang: string; chosen: Side; rejected: Side; rg: number }>;
  per_language_rg: Record<string, number>;
};

describe('golden fixture', () => {
  const ex = expected.examples;
  const policy = {
    targetChosen: scores(
      ex.map((e) => e.chosen.sumLogp),
      ex.map((e) => e.chosen.tokens),
    ),
    targetRejected: scores(
      ex.map((e) => e.rejected.sumLogp),
      ex.map((e) => e.rejected.tokens),
    ),
  };

  it('rg/target per language equals the fixture (Eq. 4: avgLogp(chosen) − avgLogp(rejected))', () => {
    const r = objectives.simpo.compute(policy, {}, {}, { lang: ex.map((e) => e.lang) });
    for (const [lang, rg] of Object.entries(expected.per_language_rg)) {
      expect(r.metrics[`rg/target/${lang}`]).toBeCloseTo(rg, 12);
    }
    const mean = ex.reduce((s, e) => s + e.rg, 0) / ex.length;
    expect(r.metrics['rg/target']).toBeCloseTo(mean, 12);
  });

  it('MPO with RG_d = 0 and β = 1 is the mean squared fixture gap', () => {
    const r = objectives.mpo.compute(policy, {}, { retain: false, rgdSource: { constant: 0 } });
    expect(r.loss).toBeCloseTo(ex.reduce((s, e) => s + e.rg * e.rg, 0) / ex.length, 12);
  });
});
