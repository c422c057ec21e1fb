// Every analytic gradient against central finite differences (float64), on random inputs, for every method and
// every MPO ablation option.
import { describe, expect, it } from 'vitest';
import { getObjective, type MethodName, type MpoHparams, methodNames, objectives } from '../src/index.js';
import { checkGradients, randomBatch } from './helpers.js';

const SIZES = [1, 2, 5];

describe('baselines: gradient = finite differences', () => {
  const cases: Array<[MethodName, object]> = [
    ['sft', {}],
    ['dpo', {}],
    ['dpo', { beta: 0.5, labelSmoothing: 0.2 }],
    ['ipo', {}],
    ['ipo', { tau: 1.0 }],
    ['rdpo', {}],
    ['rdpo', { beta: 0.3, epsilon: 0.3 }],
    ['cpo', {}],
    ['cpo', { beta: 0.5, lambda: 0.3 }],
    ['kto', {}],
    ['kto', { beta: 0.5, desirableWeight: 1.33, undesirableWeight: 0.7 }],
    ['orpo', {}],
    ['orpo', { lambda: 2 }],
    ['r-dpo', {}],
    ['r-dpo', { beta: 0.2, alpha: -0.1 }],
    ['simpo', {}],
    ['simpo', { beta: 2.0, gamma: 0.5 }],
  ];
  for (const [method, h] of cases) {
    for (const n of SIZES) {
      it(`${method} ${JSON.stringify(h)} n=${n}`, () => {
        const { policy, reference } = randomBatch(1000 * n + method.length, n);
        // KTO's z_ref (policy KL sequences) is a constant in TRL: the loss depends on it, the gradient must not.
        const detached = method === 'kto' ? ([['klMismatched', 'sumLogp']] as const) : [];
        const compared = checkGradients(getObjective(method), h, policy, reference, [...detached]);
        expect(compared).toBeGreaterThan(0);
      });
    }
  }

  it('kto: the clamp branch (z_ref = 0) is differentiated too', () => {
    const { policy, reference } = randomBatch(7, 4);
    // policy below reference on the mismatched pairs → negative KL estimate → clamped to 0
    for (let i = 0; i < 4; i++) policy.klMismatched!.sumLogp[i] = reference.klMismatched!.sumLogp[i]! - 5;
    expect(objectives.kto.compute(policy, reference, {}).metrics.kl).toBe(0);
    checkGradients(objectives.kto, {}, policy, reference, [['klMismatched', 'sumLogp']]);
  });

  it('covers every baseline (MPO below)', () => {
    expect(new Set(cases.map(([m]) => m))).toEqual(new Set(methodNames.filter((m) => m !== 'mpo')));
  });
});

describe('MPO: gradient = finite differences for every ablation', () => {
  const poolings: MpoHparams['pooling'][] = ['mean', 'mean-unmasked', 'last'];
  const sources: MpoHparams['rgdSource'][] = [
    'reference',
    'policy',
    'policy-detached',
    { constant: 0.3 },
    { language: 'zh' },
  ];
  const combos: Partial<MpoHparams>[] = [];
  for (const pooling of poolings)
    for (const retain of [true, false])
      for (const lengthNormalize of [true, false])
        for (const constraint of ['hidden', 'kl'] as const)
          for (const rgdSource of sources)
            combos.push({ pooling, retain, lengthNormalize, constraint, rgdSource });
  combos.push({ beta: 1.5, w: 0.25 }, { beta: 0.7, w: 3, pooling: 'last', constraint: 'kl' });

  combos.forEach((h, idx) => {
    it(`${JSON.stringify(h)}`, () => {
      for (const n of [1, 3]) {
        const { policy, reference } = randomBatch(idx * 31 + n, n, 4);
        // 'policy' (MPO-Policy, paper Eq. 28) differentiates through RG_d, so its dominant log-probs are checked like
        // any input; 'policy-detached' makes RG_d a target: L depends on those log-probs, d/d· is not taken.
        const detached =
          h.rgdSource === 'policy-detached'
            ? ([
                ['dominantChosen', 'sumLogp'],
                ['dominantRejected', 'sumLogp'],
              ] as const)
            : [];
        const compared = checkGradients(objectives.mpo, h, policy, reference, [...detached]);
        expect(compared).toBeGreaterThan(0);
      }
    });
  });
});

describe('MPO-Policy (rgdSource "policy") keeps the gradient through RG_d', () => {
  it('dL/dlogp(y_w^d) = −2(β·RG_t − RG_d)/(n·|y_w^d|), hand-worked, and 0 when detached', () => {
    // n = 1, β = 2: target avg log-probs −1 (3 tokens, sum −3) and −2 (4 tokens, sum −8) → RG_t = 1;
    // dominant −0.5 (2 tokens, sum −1) and −1.5 (2 tokens, sum −3) → RG_d = 1; e = 2·1 − 1 = 1
    const one = (sum: number, tokens: number) => ({
      n: 1,
      hiddenSize: 1,
      sumLogp: Float64Array.of(sum),
      tokens: Int32Array.of(tokens),
    });
    const policy = {
      targetChosen: one(-3, 3),
      targetRejected: one(-8, 4),
      dominantChosen: one(-1, 2),
      dominantRejected: one(-3, 2),
    };
    const h = { beta: 2, retain: false, rgdSource: 'policy' } as const;
    const r = objectives.mpo.compute(policy, {}, h);
    expect(r.loss).toBeCloseTo(1, 12);
    // dL/dRG_d = −2e = −2; dRG_d/dsumLogp(y_w^d) = 1/2
    expect(r.grads.dominantChosen!.sumLogp![0]).toBeCloseTo(-1, 12);
    expect(r.grads.dominantRejected!.sumLogp![0]).toBeCloseTo(1, 12);
    // dL/dRG_t = 2βe = 4; dRG_t/dsumLogp(y_w^t) = 1/3
    expect(r.grads.targetChosen!.sumLogp![0]).toBeCloseTo(4 / 3, 12);
    const detached = objectives.mpo.compute(policy, {}, { ...h, rgdSource: 'policy-detached' });
    expect(detached.loss).toBe(r.loss);
    expect(detached.grads.dominantChosen).toBeUndefined();
  });
});
