import { describe, expect, it } from 'vitest';
import { ashaDecision, ashaRungs, type RungResult } from '../src/index.js';

describe('ASHA rung schedule', () => {
  it('places rungs at minSteps·η^k below maxSteps', () => {
    expect(ashaRungs({ minSteps: 100, maxSteps: 2700, reductionFactor: 3 })).toEqual([100, 300, 900]);
    expect(ashaRungs({ minSteps: 100, maxSteps: 2701, reductionFactor: 3 })).toEqual([100, 300, 900, 2700]);
    expect(ashaRungs({ minSteps: 10, maxSteps: 50, reductionFactor: 3 })).toEqual([10, 30]);
    expect(ashaRungs({ minSteps: 1, maxSteps: 16, reductionFactor: 2 })).toEqual([1, 2, 4, 8]);
    expect(() => ashaRungs({ minSteps: 10, maxSteps: 10, reductionFactor: 3 })).toThrow(RangeError);
    expect(() => ashaRungs({ minSteps: 10, maxSteps: 100, reductionFactor: 1 })).toThrow(RangeError);
  });
});

const results = (values: number[]): RungResult[] =>
  values.map((value, i) => ({ trialId: `t${i}`, value, order: i + 1 }));

describe('ashaDecision', () => {
  const opts = { mode: 'max' as const, reductionFactor: 3, rung: 0, step: 100, metric: 'rg' };

  it('always lets the first arrival continue', () => {
    expect(ashaDecision(results([0.1]), 't0', opts)).toMatchObject({ action: 'promote', rank: 1, keep: 1 });
  });

  it('keeps the top max(1, floor(n/η)) of the results that arrived no later', () => {
    const r = results([0.5, 0.9, 0.1, 0.7, 0.3, 0.8]);
    // t1 (0.9) arrives second: among {0.5, 0.9} it ranks 1 of 2, keep 1 → promote.
    expect(ashaDecision(r, 't1', opts)).toMatchObject({ action: 'promote', rank: 1, considered: 2 });
    // t2 (0.1) third: rank 3 of 3 → stop.
    const stop = ashaDecision(r, 't2', opts);
    expect(stop).toMatchObject({ action: 'stop', rank: 3, keep: 1, considered: 3 });
    expect(stop.reason).toBe('rung 0 (step 100): rg = 0.1 ranks 3 of 3; only the top 1 (1/3) continue');
    // t5 (0.8) sixth: rank 2 of 6, keep 2 → promote.
    expect(ashaDecision(r, 't5', opts)).toMatchObject({ action: 'promote', rank: 2, keep: 2, considered: 6 });
    // t3 (0.7) fourth: rank 2 of 4, keep 1 → stop; later arrivals do not change that.
    expect(ashaDecision(r, 't3', opts).action).toBe('stop');
  });

  it('minimizes in min mode, and ties go to the candidate', () => {
    const r = results([0.5, 0.2, 0.2]);
    expect(ashaDecision(r, 't1', { ...opts, mode: 'min' }).action).toBe('promote');
    expect(ashaDecision(r, 't2', { ...opts, mode: 'min' })).toMatchObject({ action: 'promote', rank: 1 });
    expect(ashaDecision(r, 't2', opts)).toMatchObject({ action: 'stop', rank: 2 });
  });

  it('stops NaN candidates and ranks NaN others last', () => {
    expect(ashaDecision(results([Number.NaN]), 't0', opts).action).toBe('stop');
    expect(ashaDecision(results([Number.NaN, 0.1]), 't1', opts).action).toBe('promote');
  });

  it('compares everything when arrival order is unknown', () => {
    const r = [0.3, 0.2, 0.1, 0.9, 0.8, 0.7].map((value, i) => ({ trialId: `t${i}`, value }));
    expect(ashaDecision(r, 't0', opts)).toMatchObject({ action: 'stop', considered: 6, keep: 2, rank: 4 });
    expect(ashaDecision(r, 't4', opts)).toMatchObject({ action: 'promote', rank: 2 });
  });

  it('throws when the candidate has no result', () => {
    expect(() => ashaDecision(results([1]), 'nope', opts)).toThrow(/no result/);
  });
});
