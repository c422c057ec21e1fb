// Edge cases: one example, one token, extreme log-probs (no NaN/Infinity anywhere), malformed inputs.
import { describe, expect, it } from 'vitest';
import {
  getObjective,
  HyperparameterError,
  log1mexp,
  logSigmoid,
  methodNames,
  type ObjectiveResult,
  objectives,
  ScoreError,
  sigmoid,
} from '../src/index.js';
import { checkGradients, randomBatch } from './helpers.js';

function allFinite(r: ObjectiveResult): boolean {
  if (!Number.isFinite(r.loss)) return false;
  for (const v of Object.values(r.metrics)) if (!Number.isFinite(v)) return false;
  for (const g of Object.values(r.grads)) {
    for (const a of Object.values(g ?? {})) {
      for (const x of a as Float64Array) if (!Number.isFinite(x)) return false;
    }
  }
  return true;
}

function setAll(
  batch: ReturnType<typeof randomBatch>,
  f: (side: 'policy' | 'reference', group: string, i: number) => number,
) {
  for (const side of ['policy', 'reference'] as const) {
    for (const [g, s] of Object.entries(batch[side])) {
      for (let i = 0; i < s!.n; i++) s!.sumLogp[i] = f(side, g, i);
    }
  }
}

describe('stable scalar helpers', () => {
  it('logSigmoid, sigmoid at extremes', () => {
    expect(logSigmoid(1000)).toBe(-0);
    expect(logSigmoid(-1000)).toBe(-1000);
    expect(sigmoid(-1000)).toBe(0);
    expect(sigmoid(1000)).toBe(1);
    expect(logSigmoid(0)).toBeCloseTo(-Math.LN2, 15);
  });
  it('log1mexp keeps digits on both sides of −log 2', () => {
    // near 0: log(1 − e^−1e−20) = log(1e−20) = −46.0517...
    expect(log1mexp(-1e-20)).toBeCloseTo(Math.log(1e-20), 10);
    // far out: log(1 − e^−50) ≈ −e^−50
    expect(log1mexp(-50)).toBeCloseTo(-Math.exp(-50), 30);
    expect(log1mexp(-Math.LN2)).toBeCloseTo(Math.log(0.5), 15);
  });
});

describe('every method', () => {
  const mpoHeavy = { retain: true };
  for (const method of methodNames) {
    const h = method === 'mpo' ? mpoHeavy : {};
    it(`${method}: one example with one-token responses, gradients checked`, () => {
      const batch = randomBatch(3, 1, 2);
      for (const side of [batch.policy, batch.reference]) {
        for (const s of Object.values(side)) s!.tokens[0] = 1;
      }
      const detached =
        method === 'kto' ? ([['klMismatched', 'sumLogp']] as Array<['klMismatched', 'sumLogp']>) : [];
      checkGradients(getObjective(method), h, batch.policy, batch.reference, detached);
    });

    it(`${method}: huge and tiny log-probs stay finite`, () => {
      const regimes: Array<(side: 'policy' | 'reference', g: string, i: number) => number> = [
        // policy far prefers chosen: margins of ~1e6
        (side, g) => (side === 'policy' && g.endsWith('Rejected') ? -1e6 : -1),
        // policy far prefers rejected
        (side, g) => (side === 'policy' && g.endsWith('Chosen') ? -1e6 : -1),
        // everything improbable
        () => -1e7,
        // everything (almost) certain: log-probs at and next to 0
        (_s, _g, i) => (i % 2 === 0 ? 0 : -1e-300),
      ];
      for (const f of regimes) {
        const batch = randomBatch(11, 4, 2);
        setAll(batch, f);
        const r = getObjective(method).compute(batch.policy, batch.reference, h, {
          lang: ['zh', 'zh', 'ko', 'sw'],
        });
        expect(allFinite(r), `${method} ${f.toString()}`).toBe(true);
      }
    });
  }

  it('orpo: a rounding error above log-prob 0 is clamped, not NaN', () => {
    const batch = randomBatch(5, 2, 1);
    batch.policy.targetChosen!.sumLogp[0] = 1e-12;
    batch.policy.targetRejected!.sumLogp[1] = 0;
    expect(allFinite(objectives.orpo.compute(batch.policy, {}, {}))).toBe(true);
  });

  it('dpo at margin ±1e5: loss ≈ max(0, −βh), gradient saturates', () => {
    const batch = randomBatch(5, 1, 1);
    batch.reference.targetChosen!.sumLogp[0] = -1;
    batch.reference.targetRejected!.sumLogp[0] = -1;
    batch.policy.targetChosen!.sumLogp[0] = -1;
    batch.policy.targetRejected!.sumLogp[0] = -1e5 - 1;
    const good = objectives.dpo.compute(batch.policy, batch.reference, { beta: 0.1 });
    expect(good.loss).toBe(0);
    batch.policy.targetChosen!.sumLogp[0] = -1e5 - 1;
    batch.policy.targetRejected!.sumLogp[0] = -1;
    const bad = objectives.dpo.compute(batch.policy, batch.reference, { beta: 0.1 });
    expect(bad.loss).toBeCloseTo(1e4, 6);
    expect(bad.grads.targetChosen!.sumLogp![0]).toBeCloseTo(-0.1, 12);
  });

  it('per-language reward-gap metrics', () => {
    const batch = randomBatch(5, 3, 1);
    const r = objectives.dpo.compute(batch.policy, batch.reference, {}, { lang: ['zh', 'ko', 'zh'] });
    const rg = (g: 'targetChosen' | 'targetRejected', i: number) =>
      batch.policy[g]!.sumLogp[i]! / batch.policy[g]!.tokens[i]!;
    const gap = (i: number) => rg('targetChosen', i) - rg('targetRejected', i);
    expect(r.metrics['rg/target/zh']).toBeCloseTo((gap(0) + gap(2)) / 2, 12);
    expect(r.metrics['rg/target/ko']).toBeCloseTo(gap(1), 12);
    expect(r.metrics['rg/target']).toBeCloseTo((gap(0) + gap(1) + gap(2)) / 3, 12);
    // Each per-language metric carries its example count, so batches can be combined as sums and counts.
    expect(r.metricCounts).toEqual({ 'rg/target/zh': 2, 'rg/target/ko': 1 });
    const m = objectives.mpo.compute(batch.policy, batch.reference, {}, { lang: ['zh', 'ko', 'zh'] });
    expect(m.metricCounts).toEqual({
      'rg/target/zh': 2,
      'rg/target/ko': 1,
      'mpo/gap_dominant/zh': 2,
      'mpo/gap_dominant/ko': 1,
    });
    expect(objectives.dpo.compute(batch.policy, batch.reference, {}).metricCounts).toBeUndefined();
  });
});

describe('malformed inputs fail loudly, naming the group', () => {
  it('missing group', () => {
    const { policy, reference } = randomBatch(1, 2);
    delete reference.targetRejected;
    expect(() => objectives.dpo.compute(policy, reference, {})).toThrow(/reference\.targetRejected: missing/);
  });
  it('zero tokens', () => {
    const { policy, reference } = randomBatch(1, 2);
    policy.targetChosen!.tokens[1] = 0;
    expect(() => objectives.simpo.compute(policy, reference, {})).toThrow(ScoreError);
    expect(() => objectives.simpo.compute(policy, reference, {})).toThrow(
      /policy\.targetChosen: tokens\[1\] = 0/,
    );
  });
  it('NaN score', () => {
    const { policy, reference } = randomBatch(1, 2);
    policy.targetRejected!.sumLogp[0] = Number.NaN;
    expect(() => objectives.dpo.compute(policy, reference, {})).toThrow(
      /policy\.targetRejected: sumLogp\[0\] is NaN/,
    );
  });
  it('batch size mismatch', () => {
    const a = randomBatch(1, 2);
    const b = randomBatch(2, 3);
    expect(() =>
      objectives.dpo.compute({ ...a.policy, targetRejected: b.policy.targetRejected }, a.reference, {}),
    ).toThrow(/batch size 3 differs from 2/);
  });
  it('hidden of the wrong size', () => {
    const { policy, reference } = randomBatch(1, 2, 3);
    policy.dominantChosen!.meanUnmaskedHidden = new Float64Array(5);
    expect(() => objectives.mpo.compute(policy, reference, {})).toThrow(
      /meanUnmaskedHidden: expected length 2\*3, got 5/,
    );
  });
  it('invalid hyperparameters passed to compute', () => {
    const { policy, reference } = randomBatch(1, 2);
    expect(() => objectives.dpo.compute(policy, reference, { beta: -1 })).toThrow(HyperparameterError);
  });
});
