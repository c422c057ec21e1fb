// The memory planner's counts against independent sources: the engine's own parameter count,
// Meta's published size of Llama-3.1-8B, PEFT's trainable-parameter count for LoRA, and the ZeRO
// paper's per-parameter accounting. (Peak-RSS validation is a benchmark: plan-bench.ts.)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LlamaConfig, Model, toHfConfig } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { loraParameterCount, modelShape, parameterCount, planMemory } from '../src/index.js';
import { repoRoot } from './helpers.js';

const llama8b = JSON.parse(readFileSync(join(repoRoot, 'examples/plan/llama-3.1-8b.config.json'), 'utf8'));
const tiny: LlamaConfig = {
  architecture: 'LlamaForCausalLM',
  vocabSize: 100,
  hiddenSize: 48,
  intermediateSize: 80,
  numHiddenLayers: 3,
  numAttentionHeads: 6,
  numKeyValueHeads: 2,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  attentionBias: false,
  tieWordEmbeddings: false,
  maxPositionEmbeddings: 64,
};
const base = {
  ranks: 8,
  dtype: 'bf16' as const,
  zero: 2 as const,
  checkpointing: true,
  batch: 2,
  cutoff: 1024,
  deviceMemoryGB: 80,
  reserveGB: 0,
  layout: 'deepspeed' as const,
};

describe('mpo plan: model sizes', () => {
  for (const [name, over] of [
    ['Llama', {}],
    ['Qwen2 (q/k/v biases)', { architecture: 'Qwen2ForCausalLM', attentionBias: true }],
    ['tied embeddings', { tieWordEmbeddings: true }],
  ] as const) {
    it(`${name}: the parameter count equals the engine's`, () => {
      const cfg = { ...tiny, ...over } as LlamaConfig;
      const m = Model.init(cfg, { seed: 1, threads: 1 });
      expect(parameterCount(modelShape(toHfConfig(cfg)))).toBe(m.numParameters);
      m.dispose();
    });
  }

  it("Llama-3.1-8B: 8,030,261,248 parameters (the model card's 8.03B); LoRA r=16 on all seven projections: 41,943,040 (PEFT print_trainable_parameters)", () => {
    const s = modelShape(llama8b);
    expect(parameterCount(s)).toBe(8_030_261_248);
    expect(loraParameterCount(s, 16)).toBe(41_943_040);
  });
});

describe('mpo plan: memory', () => {
  it('deepspeed layout follows the ZeRO paper: 2Ψ + 2Ψ + KΨ/N (stage 1), 2Ψ + (2 + K)Ψ/N (stage 2), K = 12', () => {
    const P = 8_030_261_248;
    const s1 = planMemory({ ...base, config: llama8b, zero: 1 }).perRank;
    expect(s1.weights + s1.gradients + s1.optimizer).toBeCloseTo(2 * P + 2 * P + (12 * P) / 8, -1);
    const s2 = planMemory({ ...base, config: llama8b, zero: 2 }).perRank;
    expect(s2.weights + s2.gradients + s2.optimizer).toBeCloseTo(2 * P + (14 * P) / 8, -1);
    const s0 = planMemory({ ...base, config: llama8b, zero: 0 }).perRank;
    expect(s0.weights + s0.gradients + s0.optimizer).toBeCloseTo(16 * P, -1);
  });

  it('engine layout: flat parameters and gradients whole on each rank; ZeRO shards moments, bf16 masters, stage-2 gradients', () => {
    // What zero.ts keeps per rank (ZeroOptimizer.heldBytes, checked against its buffers in
    // zero.test.ts): 8/N moments, +4/N fp32 master below fp32, +4/N gradient shard at stage 2.
    // bf16 + ZeRO: the engine's bf16 weight storage, 2 + 2 bytes of weights and gradient per
    // parameter and nothing fp32 whole; the fp32 gradient shard (4/N) at both stages.
    const P = 8_030_261_248;
    const e = (zero: 0 | 1 | 2, dtype: 'fp32' | 'bf16') =>
      planMemory({ ...base, config: llama8b, layout: 'engine', zero, dtype }).perRank;
    expect(e(0, 'fp32')).toMatchObject({ weights: 4 * P, gradients: 4 * P, optimizer: 8 * P });
    expect(e(1, 'fp32')).toMatchObject({ weights: 4 * P, gradients: 4 * P, optimizer: P });
    expect(e(2, 'fp32')).toMatchObject({ weights: 4 * P, gradients: 4 * P + P / 2, optimizer: P });
    expect(e(0, 'bf16')).toMatchObject({ weights: 6 * P, gradients: 4 * P, optimizer: 8 * P });
    expect(e(1, 'bf16')).toMatchObject({ weights: 2 * P, gradients: 2 * P + P / 2, optimizer: 1.5 * P });
    expect(e(2, 'bf16')).toMatchObject({ weights: 2 * P, gradients: 2 * P + P / 2, optimizer: 1.5 * P });
    // One bucket of the gradient collectives: 8 ranks x 4 Mi fp32 values.
    const ws = (zero: 0 | 1 | 2) =>
      planMemory({ ...base, config: llama8b, layout: 'engine', zero }).perRank.workspace;
    expect(ws(2) - ws(0)).toBe(8 * 2 ** 22 * 4);
  });

  it('activation checkpointing keeps one hidden state per layer; fits compares the total with the device', () => {
    const full = planMemory({ ...base, config: llama8b, checkpointing: false });
    const ckpt = planMemory({ ...base, config: llama8b });
    expect(ckpt.perRank.activations).toBeLessThan(full.perRank.activations / 5);
    // 8 ranks, bf16, ZeRO-2, batch 2 x 1024: ~36 GB per rank. One 141 GB device does not hold full
    // bf16 training on this engine (18 bytes per parameter before activations), but holds LoRA.
    expect(ckpt.fits).toBe(true);
    expect(ckpt.perRank.total).toBeLessThan(80e9);
    const single = {
      ...base,
      config: llama8b,
      ranks: 1,
      zero: 0 as const,
      deviceMemoryGB: 141,
      layout: 'engine' as const,
    };
    const one = planMemory(single);
    expect(one.fits).toBe(false);
    const lora = planMemory({ ...single, lora: 16 });
    expect(lora.fits).toBe(true);
    expect(lora.model.trainableParameters).toBe(41_943_040);
  });

  it('says what is wrong with bad input', () => {
    expect(() => planMemory({ ...base, config: llama8b, ranks: 0 })).toThrow(
      /ranks must be a positive integer/,
    );
    expect(() => planMemory({ ...base, config: llama8b, batch: 1.5 })).toThrow(
      /batch must be a positive integer/,
    );
    expect(() => planMemory({ ...base, config: { hidden_size: 8 } })).toThrow(/"num_attention_heads"/);
  });
});
