// Random scores and a central-finite-difference gradient check, all in float64.
import { mulberry32 } from '@mpo/util';
import { expect } from 'vitest';
import type {
  AnyObjective,
  GradsByGroup,
  GroupName,
  Pooling,
  ScoresByGroup,
  SequenceScores,
} from '../src/index.js';
import { poolingField } from '../src/index.js';

/** Deterministic PRNG for test inputs. */
export const rng = mulberry32;

export function randomScores(rand: () => number, n: number, hiddenSize: number): SequenceScores {
  const tokens = new Int32Array(n);
  const sumLogp = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    tokens[i] = 1 + Math.floor(rand() * 20);
    // per-token log-prob in (−3, −0.05): realistic and away from ORPO's log(1 − e^x) singularity at 0
    sumLogp[i] = tokens[i]! * -(0.05 + 2.95 * rand());
  }
  const hid = () => {
    const a = new Float64Array(n * hiddenSize);
    for (let k = 0; k < a.length; k++) a[k] = 2 * rand() - 1;
    return a;
  };
  const kl = new Float64Array(n);
  for (let i = 0; i < n; i++) kl[i] = rand();
  return {
    n,
    hiddenSize,
    sumLogp,
    tokens,
    lastHidden: hid(),
    meanHidden: hid(),
    meanUnmaskedHidden: hid(),
    kl,
  };
}

export const ALL_GROUPS: GroupName[] = [
  'targetChosen',
  'targetRejected',
  'dominantChosen',
  'dominantRejected',
  'anchorChosen',
  'anchorRejected',
  'klMismatched',
];

export function randomBatch(
  seed: number,
  n: number,
  hiddenSize = 3,
): { policy: ScoresByGroup; reference: ScoresByGroup } {
  const rand = rng(seed);
  const policy: ScoresByGroup = {};
  const reference: ScoresByGroup = {};
  for (const g of ALL_GROUPS) {
    policy[g] = randomScores(rand, n, hiddenSize);
    reference[g] = randomScores(rand, n, hiddenSize);
  }
  return { policy, reference };
}

type Field = 'sumLogp' | 'lastHidden' | 'meanHidden' | 'meanUnmaskedHidden' | 'kl';

function clone(s: ScoresByGroup): ScoresByGroup {
  const out: ScoresByGroup = {};
  for (const [g, v] of Object.entries(s) as Array<[GroupName, SequenceScores]>) {
    out[g] = {
      ...v,
      sumLogp: new Float64Array(v.sumLogp),
      lastHidden: v.lastHidden && new Float64Array(v.lastHidden),
      meanHidden: v.meanHidden && new Float64Array(v.meanHidden),
      meanUnmaskedHidden: v.meanUnmaskedHidden && new Float64Array(v.meanUnmaskedHidden),
      kl: v.kl && new Float64Array(v.kl),
    };
  }
  return out;
}

/**
 * Checks d(loss)/d(score) against central differences for every differentiable policy field the objective's
 * requirements ask for; `detached` lists [group, field] pairs the loss depends on but must not differentiate.
 * Returns the number of entries compared.
 */
export function checkGradients(
  obj: AnyObjective,
  hparams: object,
  policy: ScoresByGroup,
  reference: ScoresByGroup,
  detached: ReadonlyArray<readonly [GroupName, Field]> = [],
): number {
  const res = obj.compute(policy, reference, hparams);
  expect(Number.isFinite(res.loss)).toBe(true);
  const req = obj.requirements(hparams);
  let compared = 0;
  for (const r of req.policy) {
    const fields: Field[] = [];
    if (r.sumLogp) fields.push('sumLogp');
    if (r.hidden) fields.push(poolingField[r.hidden as Pooling]);
    if (r.kl) fields.push('kl');
    for (const field of fields) {
      const isDetached = !r.grad || detached.some(([g, f]) => g === r.group && f === field);
      const analytic = (res.grads as GradsByGroup)[r.group]?.[field];
      if (isDetached) {
        expect(analytic, `${r.group}.${field} must carry no gradient`).toBeUndefined();
        continue;
      }
      expect(analytic, `${r.group}.${field} gradient`).toBeDefined();
      const base = policy[r.group]![field]!;
      for (let k = 0; k < base.length; k++) {
        const x = base[k]!;
        // Hidden states and KL enter every loss at most quadratically, where a central difference is exact for any
        // step, so a large step keeps round-off small; log-probs go through σ and need a small one.
        const h = field === 'sumLogp' ? 1e-5 * Math.max(1, Math.abs(x)) : 1e-2;
        const plus = clone(policy);
        (plus[r.group]![field] as Float64Array)[k] = x + h;
        const minus = clone(policy);
        (minus[r.group]![field] as Float64Array)[k] = x - h;
        const fd =
          (obj.compute(plus, reference, hparams).loss - obj.compute(minus, reference, hparams).loss) /
          (2 * h);
        const a = analytic![k]!;
        // Relative 1e-6 (float32 hidden gradients round at ~6e-8), plus the round-off of the difference quotient.
        const tol = 1e-6 * Math.abs(fd) + 1e-9 + (1e-15 * Math.max(1, Math.abs(res.loss))) / h;
        expect(Math.abs(a - fd), `${r.group}.${field}[${k}]: analytic ${a} vs fd ${fd}`).toBeLessThan(tol);
        compared++;
      }
    }
  }
  // No gradient for groups the objective did not declare differentiable.
  for (const g of Object.keys(res.grads) as GroupName[]) {
    expect(req.policy.find((r) => r.group === g)?.grad, `unexpected gradient for ${g}`).toBe(true);
  }
  return compared;
}

export function scores(
  sumLogp: number[],
  tokens: number[],
  extra: Partial<Omit<SequenceScores, 'n' | 'sumLogp' | 'tokens'>> = {},
): SequenceScores {
  return {
    n: sumLogp.length,
    hiddenSize: extra.hiddenSize ?? 1,
    sumLogp: Float64Array.from(sumLogp),
    tokens: Int32Array.from(tokens),
    ...extra,
  };
}
