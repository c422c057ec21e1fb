// Gemma-2 (Gemma2ForCausalLM) against the float64 reference written from transformers'
// modeling_gemma2.py (test/reference.ts), on tiny random checkpoints: logits, scores, pooled hidden
// states with padding, KV-cache generation across the sliding window, config.json parsing and
// save/load. Gradients are checked against finite differences in grad.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  fromHfConfig,
  guessTemplate,
  type LlamaConfig,
  Model,
  renderChat,
  toHfConfig,
} from '../src/index.js';
import { randomTokens, tinyGemma2 } from './helpers.js';
import { referenceHidden, referenceLogits, referenceSumLogp, weightsOf } from './reference.js';

const models: Model[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Random weights with non-trivial norm weights (Gemma initialises them to 0, i.e. a factor of 1).
function makeModel(cfg: LlamaConfig, threads = 2): Model {
  const m = Model.init(cfg, { seed: 21, std: 0.3, threads });
  models.push(m);
  const p = m.paramBuffer();
  for (const t of m.tensorLayout()) {
    if (t.name.endsWith('norm.weight'))
      for (let i = 0; i < t.numel; i++) p[t.offset + i] = 0.3 * Math.sin(i + t.offset);
  }
  m.syncParams();
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('Gemma-2 forward vs the float64 reference', () => {
  it.each([
    ['all features', tinyGemma2()],
    [
      'no soft-capping, no window',
      tinyGemma2({ attnLogitSoftcapping: null, finalLogitSoftcapping: null, slidingWindow: null }),
    ],
  ])('%s: logits within 1e-4 at every checked length and the score path', async (_name, cfg) => {
    const m = makeModel(cfg);
    const ids = randomTokens(17, 40, cfg.vocabSize);
    const ref = referenceLogits(cfg, weightsOf(m.tensorLayout(), m.paramBuffer()), ids);
    for (const T of [1, 5, 6, 40]) {
      const got = await m.logits(ids.slice(0, T));
      expect(maxAbsDiff(got, ref[T - 1]!), `T=${T}`).toBeLessThan(1e-4);
    }
    const r = await m.score({ sequences: [ids], promptLengths: [25] });
    const want = referenceSumLogp(ref, ids, 25);
    expect(Math.abs(r.sumLogp[0]! - want)).toBeLessThan(1e-4);
  });

  it('soft-capping and the window change the result (the reference is not blind to them)', () => {
    const cfg = tinyGemma2();
    const m = makeModel(cfg);
    const w = weightsOf(m.tensorLayout(), m.paramBuffer());
    const ids = randomTokens(4, 20, cfg.vocabSize);
    const base = referenceLogits(cfg, w, ids)[19]!;
    const variants: Partial<LlamaConfig['gemma2'] & object>[] = [
      { attnLogitSoftcapping: null },
      { finalLogitSoftcapping: null },
      { slidingWindow: null },
    ];
    for (const v of variants) {
      const other = referenceLogits(tinyGemma2(v), w, ids)[19]!;
      expect(maxAbsDiff(base, other), JSON.stringify(v)).toBeGreaterThan(1e-3);
    }
  });

  it('pooled hidden states with right padding (meanUnmasked: padded rows see real keys in the window)', async () => {
    const cfg = tinyGemma2({ slidingWindow: 3 });
    const m = makeModel(cfg);
    const w = weightsOf(m.tensorLayout(), m.paramBuffer());
    const seqs = [randomTokens(31, 11, 64), randomTokens(32, 6, 64), randomTokens(33, 9, 64)];
    const r = await m.score(
      { sequences: seqs, promptLengths: [2, 2, 2] },
      { lmHead: false, pooling: ['last', 'mean', 'meanUnmasked'] },
    );
    const D = cfg.hiddenSize;
    const pad = 2; // eosTokenId of tinyConfig, the default pad
    seqs.forEach((s, i) => {
      const padded = [...s, ...new Array(11 - s.length).fill(pad)];
      const h = referenceHidden(cfg, w, padded, s.length);
      for (let j = 0; j < D; j++) {
        let mean = 0;
        let meanAll = 0;
        for (let t = 0; t < 11; t++) {
          if (t < s.length) mean += h[t]![j]! / s.length;
          meanAll += h[t]![j]! / 11;
        }
        expect(Math.abs(r.lastHidden![i * D + j]! - h[s.length - 1]![j]!)).toBeLessThan(1e-4);
        expect(Math.abs(r.meanHidden![i * D + j]! - mean)).toBeLessThan(1e-4);
        expect(Math.abs(r.meanUnmaskedHidden![i * D + j]! - meanAll)).toBeLessThan(1e-4);
      }
    });
  });

  it('greedy generation past the window: KV cache, no cache, batched, and the reference agree', async () => {
    const cfg = tinyGemma2({ slidingWindow: 4 });
    const m = makeModel(cfg);
    const w = weightsOf(m.tensorLayout(), m.paramBuffer());
    const prompt = randomTokens(8, 7, cfg.vocabSize);
    const other = randomTokens(9, 10, cfg.vocabSize);
    const opts = { maxNewTokens: 6, eosTokenIds: [] };
    const [cached] = await m.generate([prompt], opts);
    const [plain] = await m.generate([prompt], { ...opts, kvCache: false });
    const batched = await m.generate([other, prompt], opts); // prompt is left padded by 3
    expect(plain).toEqual(cached);
    expect(batched[1]).toEqual(cached);
    // Each generated token is the reference's argmax given everything before it.
    const seq = [...prompt];
    for (const tok of cached!) {
      const lg = referenceLogits(cfg, w, seq)[seq.length - 1]!;
      expect(tok).toBe(lg.indexOf(Math.max(...lg)));
      seq.push(tok);
    }
  });
});

describe('Gemma-2 in bfloat16 and with activation checkpointing', () => {
  it('bf16 scores within bf16 rounding of fp32; checkpointed gradients equal plain ones', async () => {
    const cfg = tinyGemma2();
    const seqs = [randomTokens(1, 30, 64), randomTokens(2, 12, 64)];
    const batch = { sequences: seqs, promptLengths: [6, 3] };
    const f32 = makeModel(cfg);
    const bf16 = Model.init(cfg, { seed: 21, std: 0.3, dtype: 'bfloat16', threads: 2 });
    models.push(bf16);
    bf16.paramBuffer().set(f32.paramBuffer());
    bf16.syncParams();
    const a = await f32.score(batch);
    const b = await bf16.score(batch);
    for (let i = 0; i < 2; i++)
      expect(Math.abs(a.sumLogp[i]! / a.tokens[i]! - b.sumLogp[i]! / b.tokens[i]!)).toBeLessThan(0.02);
    const grads: Float32Array[] = [];
    for (const on of [false, true]) {
      f32.setActivationCheckpointing(on);
      f32.zeroGrad();
      const r = await f32.score(batch, { grad: true, pooling: ['meanUnmasked'] });
      await f32.backward(r.handle!, {
        sumLogp: [1, -1],
        meanUnmaskedHidden: new Float32Array(2 * 32).fill(0.1),
      });
      grads.push(Float32Array.from(f32.gradBuffer()));
    }
    expect(maxAbsDiff(grads[0]!, grads[1]!)).toBeLessThanOrEqual(1e-6);
  });
});

describe('Gemma-2 config.json and checkpoints', () => {
  const hf = {
    architectures: ['Gemma2ForCausalLM'],
    model_type: 'gemma2',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    hidden_activation: 'gelu_pytorch_tanh',
    query_pre_attn_scalar: 24,
    sliding_window: 5,
    attn_logit_softcapping: 50.0,
    final_logit_softcapping: 30.0,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: 256,
    bos_token_id: 2,
    eos_token_id: 1,
    pad_token_id: 0,
  };

  it('parses the Gemma2Config fields, with Gemma2Config defaults where absent', () => {
    const c = fromHfConfig(hf);
    expect(c.gemma2).toEqual({
      hiddenActivation: 'gelu_pytorch_tanh',
      queryPreAttnScalar: 24,
      slidingWindow: 5,
      attnLogitSoftcapping: 50,
      finalLogitSoftcapping: 30,
    });
    expect(c.tieWordEmbeddings).toBe(true); // Gemma2Config default tie_word_embeddings=True
    // transformers configuration_gemma2.py defaults: query_pre_attn_scalar 256, sliding_window 4096,
    // soft-capping 50 / 30, head_dim 256; null switches a cap off.
    const bare = { ...hf } as Record<string, unknown>;
    for (const k of ['query_pre_attn_scalar', 'sliding_window', 'attn_logit_softcapping', 'head_dim'])
      delete bare[k];
    bare.final_logit_softcapping = null;
    bare.hidden_size = 1024;
    const d = fromHfConfig(bare);
    expect(d.gemma2).toEqual({
      hiddenActivation: 'gelu_pytorch_tanh',
      queryPreAttnScalar: 256,
      slidingWindow: 4096,
      attnLogitSoftcapping: 50,
      finalLogitSoftcapping: null,
    });
    expect(d.headDim).toBe(256);
    expect(() => fromHfConfig({ ...hf, hidden_activation: 'relu' })).toThrow(/hidden_activation "relu"/);
  });

  it('saves config.json with the Gemma-2 fields and loads back to the same logits', async () => {
    const cfg = fromHfConfig(hf);
    const m = makeModel(cfg);
    const dir = mkdtempSync(join(tmpdir(), 'gemma2-'));
    dirs.push(dir);
    await m.save(dir);
    const saved = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(hf)) expect(saved[k], k).toEqual(v);
    expect(toHfConfig(fromHfConfig(saved))).toEqual(toHfConfig(cfg));
    const back = await Model.load(dir, { threads: 1 });
    models.push(back);
    const ids = randomTokens(3, 12, 64);
    expect(maxAbsDiff(await back.logits(ids), await m.logits(ids))).toBe(0);
    // Every tensor transformers' Gemma2 has, none it lacks (tied: no lm_head).
    const names = new Set(back.tensorLayout().map((t) => t.name));
    for (const n of [
      'model.embed_tokens.weight',
      'model.norm.weight',
      'model.layers.1.input_layernorm.weight',
      'model.layers.1.post_attention_layernorm.weight',
      'model.layers.1.pre_feedforward_layernorm.weight',
      'model.layers.1.post_feedforward_layernorm.weight',
      'model.layers.1.self_attn.q_proj.weight',
      'model.layers.1.mlp.gate_proj.weight',
    ])
      expect(names.has(n), n).toBe(true);
    expect(names.has('lm_head.weight')).toBe(false);
    expect(names.size).toBe(2 + 2 * 11);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...hf, hidden_activation: 'silu' }));
    await expect(Model.load(dir)).rejects.toThrow(/hidden_activation "silu"/);
  });

  it('uses the Gemma chat template (no system role: folded into the first user turn)', () => {
    expect(
      renderChat(
        'gemma',
        [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello' },
        ],
        { addGenerationPrompt: false },
      ),
    ).toBe('<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n');
    const plainTok = { kind: 'hf', tokenToId: () => undefined } as unknown as Parameters<
      typeof guessTemplate
    >[1];
    expect(guessTemplate('Gemma2ForCausalLM', plainTok)).toBe('gemma');
  });
});
