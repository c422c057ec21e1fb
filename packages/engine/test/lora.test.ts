// LoRA adapters (csrc/lora.h): gradients against finite differences, reference = base (adapters
// off), merged weights, PEFT adapter files, optimizer over the adapters only, seeded dropout.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type LlamaConfig,
  LORA_TARGET_MODULES,
  type LoraOptions,
  Model,
  readSafetensorsHeader,
  type ScoreGrads,
  type ScoreResult,
} from '../src/index.js';
import { centralDifference, randomTokens, tinyConfig } from './helpers.js';

const V = 40;
const D = 16;
const cfg = (over: Partial<LlamaConfig> = {}) =>
  tinyConfig({
    vocabSize: V,
    hiddenSize: D,
    intermediateSize: 24,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    ...over,
  });
const lens = [9, 5, 12, 7];
const batch = { sequences: lens.map((L, i) => randomTokens(300 + i, L, V)), promptLengths: [3, 2, 5, 1] };
const ALL: LoraOptions = { rank: 2, alpha: 6, targetModules: [...LORA_TARGET_MODULES], seed: 5 };

const models: Model[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function make(c: LlamaConfig, dtype: 'float32' | 'float64' | 'bfloat16' = 'float32', seed = 7): Model {
  const m = Model.init(c, { seed, dtype, threads: 2, std: 0.2 });
  models.push(m);
  return m;
}
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'mpo-lora-'));
  dirs.push(d);
  return d;
};
/** Non-zero B (PEFT starts B at 0, which would hide A's gradient and every adapter output). */
function perturbAdapters(m: Model, scale = 0.3): void {
  const p = m.paramBuffer();
  for (const t of m.tensorLayout())
    if (t.name.endsWith('lora_B.weight'))
      for (let i = 0; i < t.numel; i++) p[t.offset + i] = scale * Math.sin(0.7 * i + t.offset);
  m.syncParams();
}
const upstream = (n: number, pooled: boolean): ScoreGrads => ({
  sumLogp: Array.from({ length: n }, (_, i) => 0.5 * Math.sin(1.3 * i + 1)),
  ...(pooled
    ? { meanHidden: Float32Array.from({ length: n * D }, (_, i) => 0.5 * Math.sin(1.3 * i + 3)) }
    : {}),
});
function lossOf(r: ScoreResult, g: ScoreGrads): number {
  let s = 0;
  for (let i = 0; i < r.n; i++) s += r.sumLogp[i]! * (g.sumLogp![i] as number);
  if (g.meanHidden) for (let i = 0; i < r.meanHidden!.length; i++) s += r.meanHidden![i]! * g.meanHidden![i]!;
  return s;
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

describe('LoRA layout', () => {
  it('trains only the adapters: PEFT tensor names, r·(in+out) parameters per adapted projection', () => {
    const c = cfg();
    const m = make(c);
    const full = m.numParameters;
    m.enableLora({ rank: 3, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
    const q = 4 * 4; // heads * head_dim
    const kv = 2 * 4;
    const perLayer = 3 * (D + q) + 3 * (D + kv) + 3 * (24 + D);
    expect(m.numParameters).toBe(c.numHiddenLayers * perLayer);
    expect(m.numParameters).toBeLessThan(full / 5);
    const names = m.tensorLayout().map((t) => t.name);
    expect(names.slice(0, 6)).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
      'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight',
      'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight',
    ]);
    const shapes = m
      .tensorLayout()
      .slice(0, 2)
      .map((t) => t.shape);
    expect(shapes).toEqual([
      [3, D],
      [q, 3],
    ]);
    // PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_, a = sqrt(5)), B = 0.
    const p = m.paramBuffer();
    const [a, b] = m.tensorLayout();
    const A = p.subarray(a!.offset, a!.offset + a!.numel);
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(D));
    expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.5 / Math.sqrt(D));
    expect(p.subarray(b!.offset, b!.offset + b!.numel).every((x) => x === 0)).toBe(true);
  });

  it('rejects bad options with the field named', () => {
    const m = make(cfg());
    expect(() => m.enableLora({ ...ALL, rank: 0 })).toThrow(/lora\.rank/);
    expect(() => m.enableLora({ ...ALL, dropout: 1 })).toThrow(/lora\.dropout/);
    expect(() => m.enableLora({ ...ALL, targetModules: ['qkv_proj'] })).toThrow(/unknown module 'qkv_proj'/);
    m.enableLora(ALL);
    expect(() => m.enableLora(ALL)).toThrow(/already enabled/);
  });
});

describe('LoRA gradients against central differences (float64 compute)', () => {
  // As test/grad.test.ts: the float64 sumLogp with a small step and a tight tolerance; the pooled
  // hidden states come back as float32 (~5e-8 rounding in the loss), so a larger step and looser bound.
  const qwen = cfg({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true });
  it.each([
    ['Llama, dropout 0, sumLogp', cfg(), 0, false, 1e-4, 2e-5, 1e-4],
    ['Llama, dropout 0, k_proj + up_proj + down_proj only, sumLogp', cfg(), 0, false, 1e-4, 2e-5, 1e-4],
    ['Qwen2 (bias, tied), dropout 0.3, sumLogp', qwen, 0.3, false, 1e-4, 2e-5, 1e-4],
    ['Llama, dropout 0.3, sumLogp + mean pooling', cfg(), 0.3, true, 2e-3, 5e-4, 2e-3],
  ])('%s', async (_name, c, dropout, pooled, h, atol, rtol) => {
    const m = make(c, 'float64');
    const some = _name.includes('only') ? { targetModules: ['k_proj', 'up_proj', 'down_proj'] } : {};
    m.enableLora({ ...ALL, ...some, dropout });
    perturbAdapters(m);
    m.setAdapterStep(3);
    const g = upstream(batch.sequences.length, pooled);
    const opts = { pooling: pooled ? ['mean' as const] : [] };
    m.zeroGrad();
    const r = await m.score(batch, { ...opts, grad: true });
    await m.backward(r.handle!, g);
    const grad = Float64Array.from(m.gradBuffer());
    // Training-mode forwards (grad: true) so the seeded dropout masks are the same ones.
    const loss = async () => {
      const s = await m.score(batch, { ...opts, grad: true });
      m.release(s.handle!);
      return lossOf(s, g);
    };
    const p = m.paramBuffer();
    let checked = 0;
    let nonzero = 0;
    for (const t of m.tensorLayout()) {
      for (const k of [0, Math.floor(t.numel / 2), t.numel - 1]) {
        const i = t.offset + k;
        const fd = await centralDifference(p, i, h, () => m.syncParams(), loss);
        expect(Math.abs(fd - grad[i]!), `${t.name}[${k}]: fd ${fd} vs backward ${grad[i]}`).toBeLessThan(
          atol + rtol * Math.abs(fd),
        );
        checked++;
        if (Math.abs(fd) > 1e-4) nonzero++;
      }
    }
    expect(checked).toBe(3 * m.tensorLayout().length);
    expect(nonzero).toBeGreaterThan(checked / 2);
  });
});

describe('reference = base model (adapters off)', () => {
  it('starts at the base, scores the base with adapters off, and the adapted model otherwise', async () => {
    const m = make(cfg());
    const base = await m.score(batch, { pooling: ['mean'] });
    m.enableLora(ALL);
    const fresh = await m.score(batch, { pooling: ['mean'] });
    expect(Array.from(fresh.sumLogp)).toEqual(Array.from(base.sumLogp)); // B = 0: exactly the base
    perturbAdapters(m);
    const on = await m.score(batch, { pooling: ['mean'] });
    const off = await m.score(batch, { pooling: ['mean'], adapters: false });
    expect(Array.from(off.sumLogp)).toEqual(Array.from(base.sumLogp));
    expect(Array.from(off.meanHidden!)).toEqual(Array.from(base.meanHidden!));
    expect(maxDiff(on.sumLogp, base.sumLogp)).toBeGreaterThan(1e-3);
    // KL against itself as the reference: the reference forward runs adapters off, so this is
    // KL(base || adapted), zero only when adapters are off for the policy too.
    const kl = await m.score(batch, { reference: m });
    expect(Math.min(...kl.kl!)).toBeGreaterThan(0);
    const kl0 = await m.score(batch, { reference: m, adapters: false });
    expect(Math.max(...kl0.kl!.map(Math.abs))).toBeLessThan(1e-6);
  });

  it('AdamW updates the adapters only; the base (and so the reference) never moves', async () => {
    const m = make(cfg());
    const base = await m.score(batch, {});
    m.enableLora(ALL);
    const before = Float32Array.from(m.paramBuffer());
    for (let s = 0; s < 3; s++) {
      m.zeroGrad();
      const r = await m.score(batch, { grad: true });
      await m.backward(r.handle!, { sumLogp: [1, 1, 1, 1] });
      await m.step({ lr: 1e-2, weightDecay: 0.1 });
    }
    expect(maxDiff(m.paramBuffer(), before)).toBeGreaterThan(1e-3);
    expect(Array.from((await m.score(batch, { adapters: false })).sumLogp)).toEqual(Array.from(base.sumLogp));
    expect(maxDiff((await m.score(batch, {})).sumLogp, base.sumLogp)).toBeGreaterThan(1e-3);
    // Optimizer state: two fp32 moments per adapter parameter, nothing for the base.
    const d = tmp();
    await m.saveOptimizer(join(d, 'opt.bin'));
    const bytes = statSync(join(d, 'opt.bin')).size;
    expect(bytes).toBeGreaterThanOrEqual(8 * m.numParameters);
    expect(bytes).toBeLessThan(8 * m.numParameters + 1024);
    expect(m.gradBuffer().length).toBe(m.numParameters);
  });
});

describe('export', () => {
  it('merged weights score the same as base + adapters (saved and reloaded)', async () => {
    const m = make(cfg());
    m.enableLora(ALL);
    perturbAdapters(m);
    const want = await m.score(batch, { pooling: ['last'] });
    const merged = m.mergedModel();
    models.push(merged);
    expect(merged.lora).toBeNull();
    const d = tmp();
    await merged.save(d);
    const loaded = await Model.load(d, { threads: 2 });
    models.push(loaded);
    for (const x of [merged, loaded]) {
      const got = await x.score(batch, { pooling: ['last'] });
      expect(maxDiff(got.sumLogp, want.sumLogp)).toBeLessThan(2e-4);
      expect(maxDiff(got.lastHidden!, want.lastHidden!)).toBeLessThan(2e-5);
    }
  });

  it('PEFT adapter folder: config fields and tensor names; loading it reproduces the scores', async () => {
    const m = make(cfg(), 'float32', 11);
    m.enableLora({
      rank: 2,
      alpha: 4,
      dropout: 0.1,
      targetModules: ['k_proj', 'o_proj', 'gate_proj', 'up_proj'],
    });
    perturbAdapters(m);
    const d = tmp();
    await m.save(d); // with adapters, save() writes the adapter folder
    const conf = JSON.parse(readFileSync(join(d, 'adapter_config.json'), 'utf8'));
    expect(conf).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 2,
      lora_alpha: 4,
      lora_dropout: 0.1,
      target_modules: ['k_proj', 'o_proj', 'gate_proj', 'up_proj'],
      bias: 'none',
    });
    const st = await readSafetensorsHeader(join(d, 'adapter_model.safetensors'));
    expect([...st.tensors.keys()].sort()).toEqual(
      m
        .tensorLayout()
        .map((t) => t.name)
        .sort(),
    );
    expect(st.tensors.get('base_model.model.model.layers.1.mlp.up_proj.lora_B.weight')?.shape).toEqual([
      24, 2,
    ]);
    const fresh = make(cfg(), 'float32', 11);
    await fresh.loadAdapter(d);
    expect(fresh.lora?.rank).toBe(2);
    expect(fresh.weightsHash()).toBe(m.weightsHash());
    expect(Array.from((await fresh.score(batch)).sumLogp)).toEqual(
      Array.from((await m.score(batch)).sumLogp),
    );
    const other = make(cfg());
    other.enableLora(ALL);
    await expect(other.loadAdapter(d)).rejects.toThrow(/differs from the model's/);
  });
});

describe('dropout is seeded', () => {
  it('same step and rows: same masks; another step: other masks; no dropout without grad', async () => {
    const m = make(cfg());
    m.enableLora({ ...ALL, dropout: 0.5 });
    perturbAdapters(m);
    const train = async () => {
      const r = await m.score(batch, { grad: true });
      m.release(r.handle!);
      return Array.from(r.sumLogp);
    };
    m.setAdapterStep(4);
    const a = await train();
    expect(await train()).toEqual(a);
    m.setAdapterStep(5);
    expect(maxDiff(await train(), a)).toBeGreaterThan(1e-4);
    const evalA = Array.from((await m.score(batch)).sumLogp);
    const nod = make(cfg());
    nod.enableLora(ALL);
    nod.paramBuffer().set(m.paramBuffer());
    nod.syncParams();
    expect(Array.from((await nod.score(batch)).sumLogp)).toEqual(evalA);
  });
});

describe('bf16 frozen base', () => {
  it('adapters train on a bf16 base (fp32 master freed); adapters off = the bf16 base', async () => {
    const m = make(cfg(), 'bfloat16');
    const base = await m.score(batch, {});
    m.enableLora(ALL);
    perturbAdapters(m);
    const r = await m.score(batch, { grad: true });
    await m.backward(r.handle!, { sumLogp: [1, 1, 1, 1] });
    expect(m.gradNorm()).toBeGreaterThan(0);
    expect(Array.from((await m.score(batch, { adapters: false })).sumLogp)).toEqual(Array.from(base.sumLogp));
    // Merging reads the bf16 base back (upcast): same scores as bf16 base + adapters, to bf16 rounding.
    const merged = m.mergedModel();
    models.push(merged);
    expect(maxDiff((await merged.score(batch)).sumLogp, (await m.score(batch)).sumLogp)).toBeLessThan(0.5);
  });
});
