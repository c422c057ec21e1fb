// Backbone presets against the paper's Table 8 and Appendix G (values written here from the paper).
import { describe, expect, it } from 'vitest';
import { isPresetName, PRESETS, presetConflict, presetNames, validateHyperparameters } from '../src/index.js';

describe('backbone presets (paper Table 8, Appendix G)', () => {
  it('Table 8: learning rate, epochs and β per backbone', () => {
    expect(PRESETS['llama3.1-8b']).toMatchObject({
      hyperparameters: { beta: 1.0 },
      training: { learningRate: 6e-7, epochs: 2 },
    });
    expect(PRESETS['gemma2-9b']).toMatchObject({
      hyperparameters: { beta: 1.5 },
      training: { learningRate: 4e-7, epochs: 2 },
    });
    expect(PRESETS['qwen2.5-7b']).toMatchObject({
      hyperparameters: { beta: 1.5 },
      training: { learningRate: 6e-7, epochs: 2 },
    });
  });

  it('Appendix G: batch size 8, maximum sequence length 2048, 10% warm-up', () => {
    for (const name of presetNames) {
      expect(PRESETS[name].training).toMatchObject({ batchSize: 8, warmupRatio: 0.1 });
      expect(PRESETS[name].cutoff).toBe(2048);
      expect(PRESETS[name].method).toBe('mpo');
      expect(validateHyperparameters('mpo', PRESETS[name].hyperparameters)).toEqual([]);
    }
  });

  it('names and method checks', () => {
    expect(presetNames.sort()).toEqual(['gemma2-9b', 'llama3.1-8b', 'qwen2.5-7b']);
    expect(isPresetName('llama3.1-8b')).toBe(true);
    expect(isPresetName('toString')).toBe(false);
    expect(presetConflict('gemma2-9b', undefined)).toBeNull();
    expect(presetConflict('gemma2-9b', 'mpo')).toBeNull();
    expect(presetConflict('gemma2-9b', 'dpo')).toMatch(/applies to method "mpo" only/);
  });
});
