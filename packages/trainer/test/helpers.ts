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
