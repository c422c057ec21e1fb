// score -> backward against finite differences, batching invariance, the flat gradient buffer and AdamW.
import { afterAll, describe, expect, it } from 'vitest';
import { type LlamaConfig, Model, type ScoreGrads, type ScoreResult } from '../src/index.js';
import { centralDifference, LLAMA3_SCALING, randomTokens, relativeError, tinyConfig } from './helpers.js';

const small = (over: Partial<LlamaConfig> = {}) =>
  tinyConfig({
    vocabSize: 40,
    hiddenSize: 16,
    intermediateSize: 24,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    ...over,
  });

// Sequences of different lengths (so chunks are padded) with prompts of different lengths.
const lens = [9, 5, 12, 7];
const prompts = [3, 2, 5, 1];
const seqs = lens.map((L, i) => randomTokens(100 + i, L, 40));
const D = 16;

// Fixed upstream gradients: the loss is a fixed linear function of the score outputs.
type Out = 'sumLogp' | 'kl' | 'last' | 'mean' | 'meanUnmasked';
function upstream(n: number, outs: Out[]): ScoreGrads {
  const f = (k: number, i: number) => Math.sin(1.3 * i + k) * 0.5;
  const h = (k: number) => Float32Array.from({ length: n * D }, (_, i) => f(k, i));
  const g: ScoreGrads = {};
  if (outs.includes('sumLogp')) g.sumLogp = Array.from({ length: n }, (_, i) => f(1, i));
  if (outs.includes('last')) g.lastHidden = h(2);
  if (outs.includes('mean')) g.meanHidden = h(3);
  if (outs.includes('meanUnmasked')) g.meanUnmaskedHidden = h(4);
  if (outs.includes('kl')) g.kl = Array.from({ length: n }, (_, i) => f(5, i));
  return g;
}

function lossOf(r: ScoreResult, g: ScoreGrads): number {
  let s = 0;
  const dot = (a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined) => {
    if (!a || !b) return;
    for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  };
  dot(r.sumLogp, g.sumLogp);
  dot(r.lastHidden, g.lastHidden);
  dot(r.meanHidden, g.meanHidden);
  dot(r.meanUnmaskedHidden, g.meanUnmaskedHidden);
  dot(r.kl, g.kl);
  return s;
}

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});
function make(cfg: LlamaConfig, seed: number, dtype: 'float32' | 'float64' = 'float32', threads = 2): Model {
  const m = Model.init(cfg, { seed, dtype, threads, std: 0.2 });
  models.push(m);
  return m;
}

describe.each([
  ['Llama (GQA, untied)', small()],
  [
    'Qwen2 (q/k/v bias, tied embeddings)',
    small({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true }),
  ],
  ['Llama with llama3 rope_scaling', small({ ropeScaling: LLAMA3_SCALING })],
  [
    // Caps small enough that tanh bends the scores and logits (tanh(s/2) for scores ~1: 8% off
    // linear), large enough to keep the curvature in range of the pooled step; window 3 < most lengths.
    'Gemma-2 (GeGLU, 1 + weight norms, post-norms, soft-capping, sliding window)',
    small({
      architecture: 'Gemma2ForCausalLM',
      tieWordEmbeddings: true,
      gemma2: {
        hiddenActivation: 'gelu_pytorch_tanh',
        queryPreAttnScalar: 6,
        slidingWindow: 3,
        attnLogitSoftcapping: 2,
        finalLogitSoftcapping: 4,
      },
    }),
  ],
])('finite differences: %s', (_name, cfg) => {
  // Two checks: the float64 outputs (sumLogp, kl) with a small step and a tight tolerance, and the
  // pooled hidden states, which come back as float32: their loss carries ~5e-8 absolute rounding,
  // so the step is larger (truncation ~1e-6 at h = 5e-3) and the tolerance looser.
  it.each([
    ['sumLogp + kl', ['sumLogp', 'kl'] as Out[], 1e-4, 2e-5, 1e-4],
    ['last + mean + meanUnmasked pooling', ['last', 'mean', 'meanUnmasked'] as Out[], 5e-3, 5e-5, 1e-3],
  ])(
    'score -> backward matches central differences (float64 compute): %s',
    async (_what, outs, h, atol, rtol) => {
      const m = make(cfg, 7, 'float64');
      const ref = make(cfg, 8, 'float64');
      // Non-zero biases, so their gradients are exercised too.
      const p = m.paramBuffer();
      for (const t of m.tensorLayout()) {
        if (t.name.endsWith('.bias'))
          for (let i = 0; i < t.numel; i++) p[t.offset + i] = 0.1 * Math.sin(i + 1);
      }
      m.syncParams();
      const pooling = outs.filter(
        (o): o is 'last' | 'mean' | 'meanUnmasked' => o !== 'sumLogp' && o !== 'kl',
      );
      const opts = {
        pooling,
        lmHead: outs.includes('sumLogp'),
        ...(outs.includes('kl') ? { reference: ref } : {}),
      };
      const g = upstream(seqs.length, outs);
      const batch = { sequences: seqs, promptLengths: prompts };
      m.zeroGrad();
      const r = await m.score(batch, { ...opts, grad: true });
      await m.backward(r.handle!, g);
      const grad = Float64Array.from(m.gradBuffer());

      const loss = async () => lossOf(await m.score(batch, opts), g);
      const central = (i: number, step: number) => centralDifference(p, i, step, () => m.syncParams(), loss);
      let checked = 0;
      let nonzero = 0;
      for (const t of m.tensorLayout()) {
        for (const k of [0, Math.floor(t.numel / 2), t.numel - 1]) {
          const i = t.offset + k;
          const fd = await central(i, h);
          const err = Math.abs(fd - grad[i]!);
          expect(err, `${t.name}[${k}]: fd ${fd} vs backward ${grad[i]}`).toBeLessThan(
            atol + rtol * Math.abs(fd),
          );
          checked++;
          if (Math.abs(fd) > 1e-4) nonzero++;
        }
      }
      expect(checked).toBeGreaterThan(20);
      expect(nonzero).toBeGreaterThan(checked / 2);
    },
  );

  it('float32 gradients agree with float64 gradients', async () => {
    const g = upstream(seqs.length, ['sumLogp', 'last', 'mean', 'meanUnmasked']);
    const batch = { sequences: seqs, promptLengths: prompts };
    const grads: Float32Array[] = [];
    for (const dtype of ['float32', 'float64'] as const) {
      const m = make(cfg, 11, dtype);
      const r = await m.score(batch, { grad: true, pooling: ['last', 'mean', 'meanUnmasked'] });
      await m.backward(r.handle!, g);
      grads.push(Float32Array.from(m.gradBuffer()));
    }
    const [a, b] = grads as [Float32Array, Float32Array];
    expect(relativeError(a, b)).toBeLessThan(1e-4);
  });
});

describe('batching', () => {
  const cfg = small();
  const many = Array.from({ length: 11 }, (_, i) => randomTokens(300 + i, 4 + ((i * 7) % 23), 40));
  const pl = many.map((s, i) => 1 + (i % Math.max(1, s.length - 1)));

  it('batched and one-at-a-time scores agree within 1e-5', async () => {
    const m = make(cfg, 3);
    const all = await m.score({ sequences: many, promptLengths: pl }, { pooling: ['last', 'mean'] });
    for (let i = 0; i < many.length; i++) {
      const one = await m.score(
        { sequences: [many[i]!], promptLengths: [pl[i]!] },
        { pooling: ['last', 'mean'] },
      );
      expect(one.tokens[0]).toBe(all.tokens[i]);
      expect(Math.abs(one.sumLogp[0]! - all.sumLogp[i]!)).toBeLessThan(
        1e-5 * Math.max(1, Math.abs(one.sumLogp[0]!)),
      );
      for (let j = 0; j < D; j++) {
        expect(Math.abs(one.lastHidden![j]! - all.lastHidden![i * D + j]!)).toBeLessThan(1e-5);
        expect(Math.abs(one.meanHidden![j]! - all.meanHidden![i * D + j]!)).toBeLessThan(1e-5);
      }
    }
  });

  it('thread count does not change scores and gradients beyond rounding', async () => {
    const grads: Float32Array[] = [];
    const sums: Float64Array[] = [];
    for (const threads of [1, 2]) {
      const m = make(cfg, 5, 'float32', threads);
      const r = await m.score({ sequences: many, promptLengths: pl }, { grad: true, pooling: ['mean'] });
      sums.push(r.sumLogp);
      await m.backward(r.handle!, upstream(many.length, ['sumLogp', 'mean']));
      grads.push(Float32Array.from(m.gradBuffer()));
    }
    for (let i = 0; i < many.length; i++) expect(Math.abs(sums[0]![i]! - sums[1]![i]!)).toBeLessThan(1e-5);
    let num = 0;
    let den = 0;
    for (let i = 0; i < grads[0]!.length; i++) {
      num += (grads[0]![i]! - grads[1]![i]!) ** 2;
      den += grads[1]![i]! ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
  });

  it('backward of a batch equals the sum of one-at-a-time backwards', async () => {
    const g = upstream(many.length, ['sumLogp', 'last', 'mean']);
    const a = make(cfg, 9);
    const r = await a.score(
      { sequences: many, promptLengths: pl },
      { grad: true, pooling: ['last', 'mean'] },
    );
    await a.backward(r.handle!, g);
    const b = make(cfg, 9);
    for (let i = 0; i < many.length; i++) {
      const ri = await b.score(
        { sequences: [many[i]!], promptLengths: [pl[i]!] },
        { grad: true, pooling: ['last', 'mean'] },
      );
      await b.backward(ri.handle!, {
        sumLogp: [(g.sumLogp as number[])[i]!],
        lastHidden: g.lastHidden!.slice(i * D, (i + 1) * D),
        meanHidden: g.meanHidden!.slice(i * D, (i + 1) * D),
      });
    }
    const ga = a.gradBuffer();
    const gb = b.gradBuffer();
    let num = 0;
    let den = 0;
    for (let i = 0; i < ga.length; i++) {
      num += (ga[i]! - gb[i]!) ** 2;
      den += gb[i]! ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
  });

  it('is deterministic: same seed and steps give the same weightsHash', async () => {
    const hashes: string[] = [];
    for (let run = 0; run < 2; run++) {
      const m = make(cfg, 21);
      for (let s = 0; s < 2; s++) {
        m.zeroGrad();
        const r = await m.score({ sequences: many, promptLengths: pl }, { grad: true, pooling: ['mean'] });
        await m.backward(r.handle!, upstream(many.length, ['sumLogp', 'mean']));
        await m.step({ lr: 1e-2, maxGradNorm: 1 });
      }
      hashes.push(m.weightsHash());
    }
    expect(hashes[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(hashes[1]).toBe(hashes[0]);
  });
});

describe('gradient buffer and AdamW', () => {
  it('gradBuffer is one zero-copy buffer: backward fills it, zeroGrad clears it, writes are used by step', async () => {
    const m = make(small(), 1);
    const buf = m.gradBuffer();
    expect(buf).toBe(m.gradBuffer());
    expect(buf.length).toBe(m.numParameters);
    const r = await m.score({ sequences: seqs, promptLengths: prompts }, { grad: true });
    await m.backward(r.handle!, { sumLogp: [1, 1, 1, 1] });
    expect(buf.some((x) => x !== 0)).toBe(true);
    expect(m.gradNorm()).toBeGreaterThan(0);
    m.zeroGrad();
    expect(buf.every((x) => x === 0)).toBe(true);
    // Writing into the buffer (as an all-reduce would) changes the gradients the optimizer sees.
    buf[0] = 3;
    buf[1] = 4;
    expect(m.gradNorm()).toBeCloseTo(5, 6);
  });

  it('AdamW step matches a hand-computed update (decoupled weight decay, clipping, bias correction)', async () => {
    const m = make(small(), 2);
    const p0 = Float64Array.from(m.paramBuffer());
    const P = m.numParameters;
    const g = m.gradBuffer();
    const gradAt = (step: number, i: number) =>
      Math.sin(i * 0.37 + step) * (i % 3 === 0 ? 0 : 0.01 * (1 + (i % 7)));
    const o = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 0.05 };
    const p = Float64Array.from(p0);
    const mm = new Float64Array(P);
    const vv = new Float64Array(P);
    for (let step = 1; step <= 3; step++) {
      let n2 = 0;
      for (let i = 0; i < P; i++) {
        g[i] = gradAt(step, i);
        n2 += g[i]! * g[i]!;
      }
      const norm = Math.sqrt(n2);
      const clip = norm > o.maxGradNorm ? o.maxGradNorm / (norm + 1e-6) : 1;
      const res = await m.step(o);
      expect(res.gradNorm).toBeCloseTo(norm, 5);
      const bc1 = 1 - o.beta1 ** step;
      const bc2 = 1 - o.beta2 ** step;
      for (let i = 0; i < P; i++) {
        const gi = g[i]! * clip;
        p[i] = p[i]! * (1 - o.lr * o.weightDecay);
        mm[i] = o.beta1 * mm[i]! + (1 - o.beta1) * gi;
        vv[i] = o.beta2 * vv[i]! + (1 - o.beta2) * gi * gi;
        p[i] = p[i]! - (o.lr / bc1) * (mm[i]! / (Math.sqrt(vv[i]!) / Math.sqrt(bc2) + o.eps));
      }
    }
    const got = m.paramBuffer();
    let worst = 0;
    for (let i = 0; i < P; i++) worst = Math.max(worst, Math.abs(got[i]! - p[i]!));
    expect(worst).toBeLessThan(1e-6);
    // the update actually moved the weights
    let moved = 0;
    for (let i = 0; i < P; i++) moved = Math.max(moved, Math.abs(got[i]! - p0[i]!));
    expect(moved).toBeGreaterThan(1e-3);
    expect(m.optimizerStep).toBe(3);
  });

  it('rejects backward on an unknown handle and on outputs that were not computed', async () => {
    const m = make(small(), 4);
    await expect(m.backward(12345, { sumLogp: [1] })).rejects.toThrow(/unknown or already used handle/);
    const r = await m.score(
      { sequences: seqs, promptLengths: prompts },
      { grad: true, lmHead: false, pooling: ['last'] },
    );
    await expect(m.backward(r.handle!, { sumLogp: [1, 1, 1, 1] })).rejects.toThrow(/lmHead: false/);
    const r2 = await m.score(
      { sequences: seqs, promptLengths: prompts },
      { grad: true, lmHead: false, pooling: ['last'] },
    );
    await expect(m.backward(r2.handle!, { lastHidden: new Float32Array(3) })).rejects.toThrow(/expected 64/);
    const r3 = await m.score({ sequences: seqs, promptLengths: prompts }, { grad: true });
    m.release(r3.handle!);
    await expect(m.backward(r3.handle!, { sumLogp: [1, 1, 1, 1] })).rejects.toThrow(
      /unknown or already used/,
    );
  });
});
