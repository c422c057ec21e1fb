// The run spec's training block is the training config's (train-config.ts): the trainer's names, the old spec
// names still accepted with a warning, and the optimizer fields carried through to the normalized spec.
import { describe, expect, it } from 'vitest';
import { schemaProblems, TrainConfigSchema, validateRunSpec } from '../src/index.js';
import { roots, validSpec } from './fixtures.js';

describe('run spec training block', () => {
  const ctx = roots();

  it('takes the training config names, and the old ones with a warning each', () => {
    const now = validateRunSpec(
      { ...validSpec(), training: { maxSteps: 100, batchSize: 8, microBatchSize: 2 } },
      ctx,
    );
    const old = validateRunSpec(
      { ...validSpec(), training: { steps: 100, batchSize: 8, microBatch: 2 } },
      ctx,
    );
    expect(now.ok && old.ok).toBe(true);
    if (!now.ok || !old.ok) return;
    expect(old.spec.training).toEqual(now.spec.training);
    expect(now.warnings).toEqual([]);
    expect(old.warnings).toEqual([
      'training.steps: deprecated, use training.maxSteps',
      'training.microBatch: deprecated, use training.microBatchSize',
    ]);
  });

  it('refuses a field given under both names, and checks the bounds of the new names', () => {
    const r = validateRunSpec(
      { ...validSpec(), training: { steps: 10, maxSteps: 10, batchSize: 8, microBatchSize: 0 } },
      ctx,
    );
    expect(r.ok ? [] : r.problems).toEqual(
      expect.arrayContaining([
        { path: 'training.steps', reason: 'deprecated name of training.maxSteps: give one of them' },
        { path: 'training.microBatchSize', reason: 'must be ≥ 1, got 0' },
      ]),
    );
    const big = validateRunSpec({ ...validSpec(), training: { maxSteps: 10_000_001 } }, ctx);
    expect(big.ok ? [] : big.problems).toContainEqual({
      path: 'training.maxSteps',
      reason: 'must be ≤ 10000000, got 10000001',
    });
  });

  it('carries the optimizer fields of the training config into the normalized spec', () => {
    const r = validateRunSpec(
      { ...validSpec(), training: { maxSteps: 100, weightDecay: 0.01, adamBeta2: 0.95, zeroStage: 1 } },
      ctx,
    );
    expect(r.ok && r.spec.training).toMatchObject({
      steps: 100,
      weightDecay: 0.01,
      adamBeta2: 0.95,
      zeroStage: 1,
    });
    expect(r.ok && r.trials[0]!.training).toMatchObject({ weightDecay: 0.01, zeroStage: 1 });
  });
});

describe('search space over training fields', () => {
  const ctx = roots();
  const withSpace = (space: Record<string, unknown>) => ({
    ...validSpec(),
    training: { maxSteps: 100, batchSize: 8 },
    resources: { ranksPerTrial: 1, device: 'cpu' },
    search: { ...validSpec().search, space },
  });

  it('varies microBatchSize under its new name, and under the old one with a warning', () => {
    const now = validateRunSpec(withSpace({ 'training.microBatchSize': [1, 4] }), ctx);
    const old = validateRunSpec(withSpace({ 'training.microBatch': [1, 4] }), ctx);
    expect(now.ok && old.ok).toBe(true);
    if (!now.ok || !old.ok) return;
    expect(now.trials.map((t) => t.training.microBatch)).toEqual([1, 4]);
    expect(old.trials.map((t) => t.training.microBatch)).toEqual([1, 4]);
    expect(now.warnings).toEqual([]);
    expect(old.warnings).toEqual([
      'search.space.training.microBatch: deprecated, use training.microBatchSize',
    ]);
  });

  it('checks the per-rank batch of each value', () => {
    const r = validateRunSpec(withSpace({ 'training.microBatchSize': [16] }), ctx);
    expect(r.ok ? [] : r.problems.map((p) => p.path)).toContain(
      'search.space (trial 0) training.microBatchSize',
    );
  });
});

describe('training config schema', () => {
  it('explains a wrong object-form field by its inner fields, not by the union', () => {
    const problems = schemaProblems(TrainConfigSchema, {
      model: 'm',
      data: { path: 'd.json', heldOut: 1 },
      output: 'out',
      lossScaling: { backoffFactor: 2, x: 1 },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        { path: 'data.heldOut', reason: 'must be < 1, got 1' },
        { path: 'lossScaling.backoffFactor', reason: 'must be < 1, got 2' },
        { path: 'lossScaling.x', reason: 'unknown field' },
      ]),
    );
  });
});
