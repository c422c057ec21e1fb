// Forward pass against an independent float64 reference (test/reference.ts) for the paths the
// golden fixture does not cover: Qwen2 q/k/v bias + tied embeddings, llama3 rope_scaling, head_dim.
import { afterAll, describe, expect, it } from 'vitest';
import { type LlamaConfig, Model } from '../src/index.js';
import { LLAMA3_SCALING, randomTokens, tinyConfig } from './helpers.js';
import { referenceHidden, referenceLogits, referenceSumLogp, weightsOf } from './reference.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

const cases: [string, LlamaConfig][] = [
  ['Llama, GQA', tinyConfig()],
  [
    'Qwen2, q/k/v bias + tied embeddings',
    tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true }),
  ],
  [
    'Llama, llama3 rope_scaling (positions past original_max_position_embeddings)',
    tinyConfig({ ropeScaling: LLAMA3_SCALING }),
  ],
  ['Llama, explicit head_dim != hidden/heads', tinyConfig({ headDim: 12 })],
];

describe.each(cases)('forward vs float64 reference: %s', (_name, cfg) => {
  it('logits agree within 1e-4 at every checked position', async () => {
    const m = Model.init(cfg, { seed: 3, std: 0.1, threads: 1 });
    models.push(m);
    // Non-zero biases so the bias path is visible.
    const p = m.paramBuffer();
    for (const t of m.tensorLayout()) {
      if (t.name.endsWith('.bias')) for (let i = 0; i < t.numel; i++) p[t.offset + i] = 0.05 * Math.cos(i);
    }
    m.syncParams();
    const ids = randomTokens(17, 40, cfg.vocabSize);
    const ref = referenceLogits(cfg, weightsOf(m.tensorLayout(), m.paramBuffer()), ids);
    for (const T of [1, 7, 40]) {
      const got = await m.logits(ids.slice(0, T));
      const want = ref[T - 1]!;
      let worst = 0;
      for (let v = 0; v < cfg.vocabSize; v++) worst = Math.max(worst, Math.abs(got[v]! - want[v]!));
      expect(worst, `T=${T}`).toBeLessThan(1e-4);
    }
    // And the score path (log-softmax of the same logits).
    const r = await m.score({ sequences: [ids], promptLengths: [30] });
    const want = referenceSumLogp(ref, ids, 30);
    expect(Math.abs(r.sumLogp[0]! - want)).toBeLessThan(1e-4);
  });
});

describe('pooled hidden states vs the reference', () => {
  it('lastHidden, meanHidden and meanUnmaskedHidden (padded rows see only real keys, pad id fed)', async () => {
    const cfg = tinyConfig({
      architecture: 'Qwen2ForCausalLM',
      attentionBias: true,
      tieWordEmbeddings: true,
      padTokenId: 7,
    });
    const m = Model.init(cfg, { seed: 8, std: 0.1, threads: 2 });
    models.push(m);
    const w = weightsOf(m.tensorLayout(), m.paramBuffer());
    const seqs = [randomTokens(31, 11, 64), randomTokens(32, 6, 64), randomTokens(33, 9, 64)];
    const r = await m.score(
      { sequences: seqs, promptLengths: [2, 2, 2] },
      { lmHead: false, pooling: ['last', 'mean', 'meanUnmasked'] },
    );
    const D = cfg.hiddenSize;
    const Tmax = 11;
    seqs.forEach((s, i) => {
      const padded = [...s, ...new Array(Tmax - s.length).fill(7)];
      const h = referenceHidden(cfg, w, padded, s.length);
      for (let j = 0; j < D; j++) {
        const last = h[s.length - 1]![j]!;
        let mean = 0;
        for (let t = 0; t < s.length; t++) mean += h[t]![j]! / s.length;
        let meanAll = 0;
        for (let t = 0; t < Tmax; t++) meanAll += h[t]![j]! / Tmax;
        expect(Math.abs(r.lastHidden![i * D + j]! - last)).toBeLessThan(1e-4);
        expect(Math.abs(r.meanHidden![i * D + j]! - mean)).toBeLessThan(1e-4);
        expect(Math.abs(r.meanUnmaskedHidden![i * D + j]! - meanAll)).toBeLessThan(1e-4);
      }
    });
  });
});

describe('read-only calls', () => {
  it('logits, score (no grad) and generate leave the weights untouched (batch of one included)', async () => {
    const cfg = tinyConfig({
      architecture: 'Qwen2ForCausalLM',
      attentionBias: true,
      tieWordEmbeddings: true,
    });
    const m = Model.init(cfg, { seed: 5, std: 0.1 });
    models.push(m);
    const p = m.paramBuffer();
    for (const t of m.tensorLayout()) {
      if (t.name.endsWith('.bias')) for (let i = 0; i < t.numel; i++) p[t.offset + i] = 0.05 * Math.cos(i);
    }
    m.syncParams();
    const before = m.weightsHash();
    const ids = randomTokens(9, 12, 64);
    await m.logits(ids.slice(0, 1));
    await m.logits(ids);
    await m.score({ sequences: [ids], promptLengths: [3] }, { pooling: ['last', 'mean', 'meanUnmasked'] });
    await m.generate([ids.slice(0, 1), ids.slice(0, 4)], { maxNewTokens: 3, eosTokenIds: [] });
    expect(m.weightsHash()).toBe(before);
  });
});

describe('rope_scaling', () => {
  it('changes logits only for positions where it matters, and the tensors saved omit lm_head when tied', async () => {
    const base = tinyConfig();
    const scaled = tinyConfig({ ropeScaling: LLAMA3_SCALING });
    const a = Model.init(base, { seed: 1 });
    const b = Model.init(scaled, { seed: 1 });
    models.push(a, b);
    expect(a.weightsHash()).toBe(b.weightsHash());
    const ids = randomTokens(5, 30, 64);
    // position 0 has angle 0 for every frequency: identical; later positions differ
    const a1 = await a.logits(ids.slice(0, 1));
    const b1 = await b.logits(ids.slice(0, 1));
    expect(Math.max(...a1.map((v, i) => Math.abs(v - b1[i]!)))).toBeLessThan(1e-6);
    const a2 = await a.logits(ids);
    const b2 = await b.logits(ids);
    expect(Math.max(...a2.map((v, i) => Math.abs(v - b2[i]!)))).toBeGreaterThan(1e-4);
    const tied = Model.init(tinyConfig({ tieWordEmbeddings: true }), { seed: 1 });
    models.push(tied);
    expect(tied.tensorLayout().some((t) => t.name === 'lm_head.weight')).toBe(false);
  });
});
