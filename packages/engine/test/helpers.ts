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

// Every Gemma-2 feature visible at this size: head_dim != hidden/heads, query_pre_attn_scalar !=
// head_dim, caps small enough for tanh to bend the values, a window shorter than the sequences and
// three layers (0 and 2 sliding, 1 global).
export function tinyGemma2(over: Partial<LlamaConfig['gemma2'] & object> = {}): LlamaConfig {
  return tinyConfig({
    architecture: 'Gemma2ForCausalLM',
    numHiddenLayers: 3,
    headDim: 16,
    tieWordEmbeddings: true,
    gemma2: {
      hiddenActivation: 'gelu_pytorch_tanh',
      queryPreAttnScalar: 24,
      slidingWindow: 5,
      attnLogitSoftcapping: 1.5,
      finalLogitSoftcapping: 3,
      ...over,
    },
  });
}

/** llama3 rope_scaling whose original context (16) the tests' sequences run past. */
export const LLAMA3_SCALING: NonNullable<LlamaConfig['ropeScaling']> = {
  ropeType: 'llama3',
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 16,
};

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

/**
 * Central difference of `loss` in the fp32 parameter p[i], p[i] restored after. Parameters are fp32: it divides
 * by the step actually stored, not the one asked for. `sync` pushes p to the model (syncParams).
 */
export async function centralDifference(
  p: Float32Array,
  i: number,
  step: number,
  sync: () => void,
  loss: () => Promise<number>,
): Promise<number> {
  const orig = p[i]!;
  const pu = Math.fround(orig + step);
  const pd = Math.fround(orig - step);
  p[i] = pu;
  sync();
  const up = await loss();
  p[i] = pd;
  sync();
  const down = await loss();
  p[i] = orig;
  sync();
  return (up - down) / (pu - pd);
}

/** ‖x − ref‖ / ‖ref‖ over whole buffers. */
export function relativeError(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
