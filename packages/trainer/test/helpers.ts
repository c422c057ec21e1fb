import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Encoders } from '@mpo/data';

export const repoRoot = resolve(import.meta.dirname, '../../..');
export const goldenDir = join(repoRoot, 'packages/engine/test/fixtures/golden-llama');
export const mpoData = join(repoRoot, 'datasets/mpo/llama_mpo_data.json');
export const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `mpo-trainer-${tag}-`));

/** UTF-8 bytes with BOS 256 / EOS 257: the byte-level layout of the project's small models. */
export const byteEncoders: Encoders = {
  encodePrompt: (p) => [256, ...Buffer.from(`${p}\n`, 'utf8')],
  encodeResponse: (r) => [...Buffer.from(r, 'utf8'), 257],
};

/** A tiny Llama (byte vocabulary) that trains in well under a second per step on one core. */
export const tinyModel = (seed = 1) => ({
  init: {
    architecture: 'LlamaForCausalLM',
    vocabSize: 264,
    hiddenSize: 32,
    intermediateSize: 64,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 512,
    bosTokenId: 256,
    eosTokenId: 257,
    padTokenId: 258,
  },
  seed,
});

/**
 * The MPO run many trainer tests start from: the tiny model on 12 rows of the MPO data, 6 steps with a checkpoint
 * every 2. `extra` replaces whole fields.
 */
export const tinyMpoConfig = (out: string, extra: Record<string, unknown> = {}) => ({
  model: tinyModel(3),
  data: { format: 'mpo', path: mpoData, limit: 12, heldOut: 0.1 },
  method: 'mpo',
  hyperparameters: { beta: 1.0 },
  cutoff: 96,
  output: out,
  threads: 1,
  training: { batchSize: 4, microBatchSize: 2, learningRate: 1e-3, maxSteps: 6, checkpointEvery: 2, seed: 5 },
  ...extra,
});
