import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SpecContext } from '../src/index.js';

/** Model and data roots with one model folder, one data file and a symlink pointing out of the root. */
export function roots(): SpecContext & { outside: string } {
  const base = mkdtempSync(join(tmpdir(), 'mpo-queue-'));
  const modelRoot = join(base, 'models');
  const dataRoot = join(base, 'data');
  const outside = join(base, 'outside');
  mkdirSync(join(modelRoot, 'llama-1b'), { recursive: true });
  mkdirSync(dataRoot, { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(dataRoot, 'mpo.json'), '[]');
  writeFileSync(join(outside, 'secret.json'), '[]');
  symlinkSync(outside, join(dataRoot, 'escape'));
  return { modelRoot, dataRoot, outside };
}

export const validSpec = () => ({
  name: 'mpo-grid',
  model: 'llama-1b',
  data: 'mpo.json',
  dominantLanguage: 'en',
  targetLanguages: ['zh', 'ko'],
  method: 'mpo',
  hyperparameters: { w: 1 },
  search: {
    strategy: 'grid',
    space: { beta: [0.5, 1, 1.5], 'training.learningRate': [1e-5, 3e-5] },
    metric: 'heldout/reward_gap',
    mode: 'max',
  },
  resources: { ranksPerTrial: 2, device: 'cpu' },
  eval: { benchmarks: ['reward-gap', 'multijail'] },
  training: { steps: 100, batchSize: 8, microBatch: 2, checkpointEvery: 50 },
});
