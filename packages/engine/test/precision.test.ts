// Mixed precision on the CPU (bfloat16 compute with oneDNN's bf16 GEMM, fp32 master weights and
// AdamW state) and loss scaling (step's gradScale), against float32.
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_S, engineInfo, Model } from '../src/index.js';
import { randomTokens, relativeError, tinyConfig } from './helpers.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

describe.skipIf(!engineInfo().bf16Gemm)('bfloat16 mixed precision (oneDNN bf16 GEMM)', () => {
  // Negative log-likelihood per token of the responses (the SFT term), trained with AdamW: the loss of
  // each step of a bf16 run against the fp32 run from the same weights and data. Stated tolerance:
  // 1% relative per step (bf16 keeps 8 mantissa bits: GEMM inputs carry ~0.2-0.4% relative rounding).
  it('a config-S run tracks the fp32 loss within 1% at every step over 8 AdamW steps', async () => {
    const seqs = Array.from({ length: 4 }, (_, i) => randomTokens(500 + i, 128, CONFIG_S.vocabSize));
    const batch = { sequences: seqs, promptLengths: seqs.map(() => 32) };
    const curve = async (dtype: 'float32' | 'bfloat16') => {
      const m = Model.init(CONFIG_S, { seed: 2, dtype, threads: 2 });
      models.push(m);
      const losses: number[] = [];
      for (let s = 0; s < 8; s++) {
        m.zeroGrad();
        const r = await m.score(batch, { grad: true });
        const tokens = r.tokens.reduce((a, b) => a + b, 0);
        losses.push(-r.sumLogp.reduce((a, b) => a + b, 0) / tokens);
        await m.backward(r.handle!, { sumLogp: seqs.map(() => -1 / tokens) });
        await m.step({ lr: 1e-3, maxGradNorm: 1 });
      }
      return { losses, hash: m.weightsHash() };
    };
    const f32 = await curve('float32');
    const bf16 = await curve('bfloat16');
    console.log(`fp32 loss ${f32.losses.map((l) => l.toFixed(4)).join(' ')}`);
    console.log(`bf16 loss ${bf16.losses.map((l) => l.toFixed(4)).join(' ')}`);
    expect(f32.losses.at(-1)!).toBeLessThan(f32.losses[0]! - 0.05); // it does learn
    f32.losses.forEach((l, i) => {
      expect(Math.abs(bf16.losses[i]! - l) / l, `step ${i}`).toBeLessThan(0.01);
    });
    expect(bf16.hash).not.toBe(f32.hash); // a different arithmetic really ran
  });

  it('gradients agree with fp32 within bf16 rounding, logits come back in fp32', async () => {
    const cfg = tinyConfig({ hiddenSize: 64, intermediateSize: 96 });
    const grads: Float32Array[] = [];
    const seqs = [randomTokens(1, 30, 64), randomTokens(2, 17, 64)];
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const m = Model.init(cfg, { seed: 6, dtype, threads: 2 });
      models.push(m);
      const r = await m.score({ sequences: seqs, promptLengths: [4, 3] }, { grad: true, pooling: ['mean'] });
      await m.backward(r.handle!, { sumLogp: [1, -0.5], meanHidden: new Float32Array(2 * 64).fill(0.01) });
      grads.push(Float32Array.from(m.gradBuffer()));
    }
    const [a, b] = grads as [Float32Array, Float32Array];
    const rel = relativeError(b, a);
    expect(rel).toBeGreaterThan(0); // rounded, so not identical
    expect(rel).toBeLessThan(0.02);
  });
});

describe('loss scaling (step gradScale)', () => {
  const batch = { sequences: [randomTokens(3, 25, 64), randomTokens(4, 12, 64)], promptLengths: [5, 2] };
  async function stepWith(scale: number, clip: number): Promise<{ hash: string; norm: number }> {
    const m = Model.init(tinyConfig(), { seed: 9, threads: 2 });
    models.push(m);
    const r = await m.score(batch, { grad: true });
    await m.backward(r.handle!, { sumLogp: [-scale, -0.5 * scale] });
    const { gradNorm } = await m.step({ lr: 1e-2, maxGradNorm: clip, gradScale: scale });
    return { hash: m.weightsHash(), norm: gradNorm };
  }

  it('a power-of-two scale gives the bit-identical update and the unscaled norm (with and without clipping)', async () => {
    for (const clip of [0, 0.5]) {
      const plain = await stepWith(1, clip);
      const scaled = await stepWith(65536, clip);
      expect(scaled.hash).toBe(plain.hash);
      expect(scaled.norm).toBeCloseTo(plain.norm, 10);
    }
  });

  it('an overflowed (inf or NaN) gradient skips the step and leaves the weights alone', async () => {
    for (const bad of [Number.POSITIVE_INFINITY, Number.NaN]) {
      const m = Model.init(tinyConfig(), { seed: 9, threads: 1 });
      models.push(m);
      const r = await m.score(batch, { grad: true });
      await m.backward(r.handle!, { sumLogp: [-1, -1] });
      m.gradBuffer()[17] = bad;
      const before = m.weightsHash();
      const { gradNorm } = await m.step({ lr: 1e-2, gradScale: 1024 });
      expect(Number.isFinite(gradNorm)).toBe(false);
      expect(m.weightsHash()).toBe(before);
    }
    const m = Model.init(tinyConfig(), { seed: 9 });
    models.push(m);
    await expect(m.step({ lr: 1e-2, gradScale: 0 })).rejects.toThrow(
      /gradScale must be a positive finite number/,
    );
  });
});
