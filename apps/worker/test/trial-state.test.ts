// trial-state.ts: a trial's step, best metric and ASHA rung decisions from the trainer's messages.
import type { TrainerMessage } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import { TrialState } from '../src/trial-state.js';

describe('trial bookkeeping', () => {
  const step = (n: number, loss: number, metrics: Record<string, unknown> = {}): TrainerMessage =>
    ({ type: 'step', step: n, totalSteps: 10, loss, metrics }) as TrainerMessage;
  const evalAt = (n: number, gap: number): TrainerMessage =>
    ({
      type: 'eval',
      step: n,
      metrics: { 'heldout/reward_gap': { en: gap, zh: gap + 0.2 } },
    }) as TrainerMessage;

  it('tracks the best objective value (loss included)', () => {
    const s = new TrialState({ metric: 'loss', mode: 'min' }, undefined, 0.9);
    s.observe(step(1, 1.2));
    expect(s.bestMetric).toBe(0.9);
    s.observe(step(2, 0.5));
    s.observe(step(3, 0.7));
    expect([s.step, s.loss, s.bestMetric]).toEqual([3, 0.7, 0.5]);
    const g = new TrialState({ metric: 'heldout/reward_gap:zh', mode: 'max' }, undefined);
    g.observe(evalAt(3, 0.1));
    g.observe(evalAt(6, 0.05));
    expect(g.bestMetric).toBeCloseTo(0.3);
  });

  it('decides a rung on its eval line, or on the step metrics when no eval line comes', () => {
    const asha = {
      rungs: [2, 4],
      maxSteps: 10,
      reductionFactor: 3,
      metric: 'heldout/reward_gap',
      mode: 'max' as const,
    };
    const s = new TrialState({ metric: 'loss', mode: 'min' }, asha);
    expect(s.observe(step(1, 1))).toEqual([]);
    expect(s.observe(step(2, 1))).toEqual([]);
    expect(s.observe(evalAt(2, 0.4))).toEqual([{ rung: 0, step: 2, value: expect.closeTo(0.5) }]);
    expect(s.observe(step(3, 1))).toEqual([]);
    // No eval at step 4: the next step decides rung 1 on step 4's metrics.
    expect(s.observe(step(4, 1, { 'heldout/reward_gap': 0.7 }))).toEqual([]);
    expect(s.observe(step(5, 1))).toEqual([{ rung: 1, step: 4, value: 0.7 }]);
    expect(s.observe(evalAt(4, 0.1))).toEqual([]); // decided already
  });

  it('ranks a rung without its metric last (NaN)', () => {
    const asha = { rungs: [1], maxSteps: 3, reductionFactor: 3, metric: 'nope', mode: 'max' as const };
    const s = new TrialState({ metric: 'loss', mode: 'min' }, asha);
    s.observe(step(1, 1));
    expect(s.flushRungs()).toEqual([{ rung: 0, step: 1, value: Number.NaN }]);
  });
});
