// schedule.ts: the learning-rate schedule.
import { describe, expect, it } from 'vitest';
import { cosineWithWarmup } from '../src/schedule.js';

describe('cosine schedule with 10% warmup', () => {
  it('matches hand-worked values', () => {
    // total 20 → warmup W = 2 steps: lr·1/2, lr·2/2; then p = (s−2)/18.
    expect(cosineWithWarmup(0, 20, 1e-3)).toBeCloseTo(5e-4, 15);
    expect(cosineWithWarmup(1, 20, 1e-3)).toBeCloseTo(1e-3, 15);
    expect(cosineWithWarmup(2, 20, 1e-3)).toBeCloseTo(1e-3, 15);
    // s = 11: p = 0.5 → ½(1 + cos(π/2)) = 0.5
    expect(cosineWithWarmup(11, 20, 1e-3)).toBeCloseTo(5e-4, 15);
    // s = 20 (one past the end): p = 1 → 0
    expect(cosineWithWarmup(20, 20, 1e-3)).toBeCloseTo(0, 15);
  });
});
