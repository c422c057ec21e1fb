// `"preset"` in a training config: MPO's per-backbone values from the paper (Table 8: learning rate, epochs, β;
// Appendix G: batch size 8, maximum sequence length 2048, cosine schedule with 10% warm-up), values written here.
import { describe, expect, it } from 'vitest';
import { type ConfigError, cosineWithWarmup, parseTrainConfig } from '../src/index.js';

const base = { model: 'models/x', data: { format: 'mpo', path: 'data.json' }, output: 'out' };

describe('training config presets', () => {
  it('fill method, β, learning rate, epochs, batch size, warm-up and cutoff (Table 8, Appendix G)', () => {
    const table8 = {
      'llama3.1-8b': { lr: 6e-7, beta: 1.0 },
      'gemma2-9b': { lr: 4e-7, beta: 1.5 },
      'qwen2.5-7b': { lr: 6e-7, beta: 1.5 },
    };
    for (const [preset, { lr, beta }] of Object.entries(table8)) {
      const c = parseTrainConfig({ ...base, preset }, '/cfg');
      expect(c.method).toBe('mpo');
      expect(c.preset).toBe(preset);
      expect(c.hyperparameters).toEqual({ beta });
      expect(c.training).toMatchObject({ learningRate: lr, epochs: 2, batchSize: 8, warmupRatio: 0.1 });
      expect(c.cutoff).toBe(2048);
    }
  });

  it('the schedule is cosine with 10% warm-up: peak after 10% of the steps, half-way down at 55%', () => {
    expect(cosineWithWarmup(10, 100, 6e-7, 0.1)).toBeCloseTo(6e-7, 18);
    expect(cosineWithWarmup(55, 100, 6e-7, 0.1)).toBeCloseTo(3e-7, 18);
  });

  it('values the config states win over the preset', () => {
    const c = parseTrainConfig(
      {
        ...base,
        preset: 'gemma2-9b',
        method: 'mpo',
        hyperparameters: { beta: 2.0, w: 0.5 },
        training: { learningRate: 5e-7, microBatchSize: 1 },
        cutoff: 1024,
      },
      '/cfg',
    );
    expect(c.hyperparameters).toEqual({ beta: 2.0, w: 0.5 });
    expect(c.training).toMatchObject({ learningRate: 5e-7, epochs: 2, batchSize: 8, microBatchSize: 1 });
    expect(c.cutoff).toBe(1024);
  });

  it('rejects an unknown preset and a preset with another method, naming the field', () => {
    const problems = (raw: object) => {
      try {
        parseTrainConfig(raw, '/cfg');
      } catch (e) {
        return (e as ConfigError).problems;
      }
      return [];
    };
    expect(problems({ ...base, preset: 'llama-3' })).toEqual([
      { path: 'preset', reason: 'must be one of llama3.1-8b, gemma2-9b, qwen2.5-7b, got "llama-3"' },
      expect.objectContaining({ path: 'method' }),
    ]);
    expect(problems({ ...base, preset: 'qwen2.5-7b', method: 'dpo' })).toEqual([
      { path: 'preset', reason: expect.stringMatching(/applies to method "mpo" only/) },
    ]);
  });
});
