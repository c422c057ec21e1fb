// "preset" in a run spec: MPO's per-backbone values from the paper (Table 8: learning rate, epochs, β;
// Appendix G: batch size 8, maximum sequence length 2048, 10% warm-up), values written here from the paper.
import { describe, expect, it } from 'vitest';
import { validateRunSpec } from '../src/index.js';
import { roots, validSpec } from './fixtures.js';

const ctx = roots();
const presetSpec = (preset: string, extra: Record<string, unknown> = {}) => ({
  ...validSpec(),
  preset,
  hyperparameters: {},
  search: { strategy: 'grid', space: { w: [0.5, 1] }, metric: 'heldout/reward_gap', mode: 'max' },
  training: {},
  ...extra,
});

describe('run spec presets', () => {
  it('fill β, learning rate, 2 epochs, batch 8, cutoff 2048 and 10% warm-up', () => {
    const table8 = {
      'llama3.1-8b': { lr: 6e-7, beta: 1.0 },
      'gemma2-9b': { lr: 4e-7, beta: 1.5 },
      'qwen2.5-7b': { lr: 6e-7, beta: 1.5 },
    };
    for (const [preset, { lr, beta }] of Object.entries(table8)) {
      const r = validateRunSpec(presetSpec(preset), ctx);
      if (!r.ok) throw new Error(JSON.stringify(r.problems));
      expect(r.spec.preset).toBe(preset);
      expect(r.spec.hyperparameters).toEqual({ beta });
      expect(r.spec.training).toMatchObject({
        learningRate: lr,
        epochs: 2,
        batchSize: 8,
        cutoff: 2048,
        warmupRatio: 0.1,
      });
      expect(r.trials[0]!.hyperparameters).toMatchObject({ beta, w: 0.5 });
    }
  });

  it('stated values and searched ones win over the preset', () => {
    const r = validateRunSpec(
      presetSpec('gemma2-9b', {
        hyperparameters: { w: 2 },
        search: { strategy: 'grid', space: { beta: [1, 2] }, metric: 'heldout/reward_gap', mode: 'max' },
        training: { steps: 10, cutoff: 1024 },
      }),
      ctx,
    );
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.spec.hyperparameters).toEqual({ w: 2 });
    expect(r.spec.training).toMatchObject({ steps: 10, cutoff: 1024, learningRate: 4e-7 });
    expect(r.spec.training.epochs).toBeUndefined();
    expect(r.trials.map((t) => t.hyperparameters.beta)).toEqual([1, 2]);
  });

  it('rejects an unknown preset and a preset with another method at "preset"', () => {
    const unknown = validateRunSpec(presetSpec('llama-3'), ctx);
    expect(unknown.ok).toBe(false);
    if (!unknown.ok) expect(unknown.problems.map((p) => p.path)).toContain('preset');
    const other = validateRunSpec(presetSpec('qwen2.5-7b', { method: 'dpo' }), ctx);
    expect(other.ok).toBe(false);
    if (!other.ok)
      expect(other.problems).toContainEqual({
        path: 'preset',
        reason: expect.stringMatching(/applies to method "mpo" only/),
      });
  });
});
