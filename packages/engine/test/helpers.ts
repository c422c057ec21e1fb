import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LlamaConfig } from '../src/config.js';

export const pkgRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = resolve(pkgRoot, '../..');
/** The golden fixture (tiny random Llama + independent reference outputs; datasets/README.md lists its sha256). */
export const goldenDir = resolve(pkgRoot, 'test/fixtures/golden-llama');

export function tinyConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    architecture: 'LlamaForCausalLM',
    vocabSize: 64,
    hiddenSize: 32,
    intermediateSize: 48,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 256,
    bosTokenId: 1,
    eosTokenId: 2,
    ...over,
  };
}

/** Deterministic pseudo-random token ids. */
export function randomTokens(seed: number, n: number, vocab: number): number[] {
  let s = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out.push(s % vocab);
  }
  return out;
}
