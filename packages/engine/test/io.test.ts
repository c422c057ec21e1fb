// Checkpoint and optimizer-state IO, and the errors that name the problem.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fromHfConfig, type LlamaConfig, Model, toHfConfig } from '../src/index.js';
import { buildHeader, readSafetensorsHeader } from '../src/safetensors.js';
import { randomTokens, tinyConfig } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpo-engine-io-'));
const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
  rmSync(tmp, { recursive: true, force: true });
});
const keep = (m: Model) => {
  models.push(m);
  return m;
};
const seqs = [randomTokens(1, 12, 64), randomTokens(2, 7, 64)];
const batch = { sequences: seqs, promptLengths: [4, 3] };

// Round to bfloat16 / float16 the way torch does (round to nearest even).
function roundBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const lsb = (u[0]! >>> 16) & 1;
  u[0] = ((u[0]! + 0x7fff + lsb) >>> 16) << 16;
  return f[0]!;
}
function roundF16(x: number): number {
  // float16 has 11 significant bits; values here are normal and well inside the range
  if (x === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(x)));
  const q = 2 ** Math.max(e - 10, -24); // subnormals below 2^-14
  const r = x / q;
  const fl = Math.floor(r);
  const diff = r - fl;
  const n = diff > 0.5 || (diff === 0.5 && fl % 2 !== 0) ? fl + 1 : fl;
  return n * q;
}

function rewriteConfig(dir: string, f: (c: Record<string, unknown>) => void) {
  const p = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
  f(c);
  writeFileSync(p, JSON.stringify(c));
}

// Rewrite model.safetensors with the tensors transformed by `edit` (drop: return null).
async function rewriteTensors(
  dir: string,
  edit: (name: string, shape: number[], data: Buffer) => { shape: number[]; data: Buffer } | null,
) {
  const path = join(dir, 'model.safetensors');
  const st = await readSafetensorsHeader(path);
  const bytes = readFileSync(path);
  const out: { name: string; shape: number[]; data: Buffer }[] = [];
  for (const t of st.tensors.values()) {
    const r = edit(t.name, t.shape, bytes.subarray(t.fileOffset, t.fileOffset + t.nbytes));
    if (r) out.push({ name: t.name, ...r });
  }
  const header = buildHeader(out.map((o) => ({ name: o.name, dtype: 'F32', shape: o.shape })));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(header), ...out.map((o) => o.data)]));
}

describe('save and load', () => {
  it('F32 round trip keeps weights and scores exactly', async () => {
    const m = keep(Model.init(tinyConfig(), { seed: 1 }));
    const dir = join(tmp, 'f32');
    await m.save(dir);
    const st = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    expect(st.tensors.get('model.layers.0.self_attn.k_proj.weight')?.shape).toEqual([16, 32]);
    expect(st.tensors.get('lm_head.weight')?.dtype).toBe('F32');
    const l = keep(await Model.load(dir));
    expect(l.weightsHash()).toBe(m.weightsHash());
    expect(l.config).toEqual(m.config);
    const a = await m.score(batch);
    const b = await l.score(batch);
    expect(Array.from(b.sumLogp)).toEqual(Array.from(a.sumLogp));
  });

  it.each([
    ['bfloat16', 'BF16', roundBf16],
    ['float16', 'F16', roundF16],
  ] as const)(
    'loads %s checkpoints (weights = rounded fp32) and saves them back in the same dtype',
    async (dtype, st, round) => {
      const m = keep(Model.init(tinyConfig(), { seed: 2 }));
      const dir = join(tmp, dtype);
      await m.save(dir, { dtype });
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { torch_dtype: string };
      expect(cfg.torch_dtype).toBe(dtype);
      expect(
        (await readSafetensorsHeader(join(dir, 'model.safetensors'))).tensors.get('model.norm.weight')?.dtype,
      ).toBe(st);
      const l = keep(await Model.load(dir));
      const want = m.paramBuffer();
      const got = l.paramBuffer();
      for (let i = 0; i < want.length; i += 7) expect(got[i]).toBe(round(want[i]!));
      const a = await m.score(batch);
      const b = await l.score(batch);
      expect(Math.abs(a.sumLogp[0]! - b.sumLogp[0]!)).toBeLessThan(0.05);
      // saved again in the dtype it was loaded with
      const dir2 = join(tmp, `${dtype}-again`);
      await l.save(dir2);
      expect(
        (await readSafetensorsHeader(join(dir2, 'model.safetensors'))).tensors.get('model.norm.weight')
          ?.dtype,
      ).toBe(st);
      const l2 = keep(await Model.load(dir2));
      expect(l2.weightsHash()).toBe(l.weightsHash());
    },
  );

  it('loads sharded checkpoints via model.safetensors.index.json', async () => {
    const m = keep(Model.init(tinyConfig(), { seed: 3 }));
    const dir = join(tmp, 'sharded');
    await m.save(dir);
    const path = join(dir, 'model.safetensors');
    const st = await readSafetensorsHeader(path);
    const bytes = readFileSync(path);
    const names = [...st.tensors.keys()];
    const shards = [names.slice(0, 7), names.slice(7)];
    const weightMap: Record<string, string> = {};
    shards.forEach((group, k) => {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      const header = buildHeader(
        group.map((n) => ({ name: n, dtype: 'F32', shape: st.tensors.get(n)!.shape })),
      );
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
      const data = group.map((n) => {
        const t = st.tensors.get(n)!;
        return bytes.subarray(t.fileOffset, t.fileOffset + t.nbytes);
      });
      writeFileSync(join(dir, file), Buffer.concat([len, Buffer.from(header), ...data]));
      for (const n of group) weightMap[n] = file;
    });
    rmSync(path);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    const l = keep(await Model.load(dir));
    expect(l.weightsHash()).toBe(m.weightsHash());
  });

  it('Qwen2 with tied embeddings: no lm_head saved; an lm_head in the file is ignored', async () => {
    const cfg: LlamaConfig = tinyConfig({
      architecture: 'Qwen2ForCausalLM',
      attentionBias: true,
      tieWordEmbeddings: true,
    });
    const m = keep(Model.init(cfg, { seed: 4 }));
    const dir = join(tmp, 'qwen2');
    await m.save(dir);
    const st = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    expect(st.tensors.has('lm_head.weight')).toBe(false);
    expect(st.tensors.get('model.layers.1.self_attn.q_proj.bias')?.shape).toEqual([32]);
    const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(hf.architectures).toEqual(['Qwen2ForCausalLM']);
    expect(fromHfConfig(hf)).toEqual(cfg);
    const l = keep(await Model.load(dir));
    expect(l.weightsHash()).toBe(m.weightsHash());
  });

  it('config round trip through toHfConfig/fromHfConfig, with llama3 rope_scaling', () => {
    const cfg = tinyConfig({
      ropeScaling: {
        ropeType: 'llama3',
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
      eosTokenId: [2, 3],
      headDim: 8,
    });
    expect(fromHfConfig(toHfConfig(cfg))).toEqual(cfg);
  });
});

describe('errors name the problem', () => {
  it('unknown architecture', async () => {
    const dir = join(tmp, 'arch');
    await keep(Model.init(tinyConfig(), { seed: 1 })).save(dir);
    rewriteConfig(dir, (c) => {
      c.architectures = ['MistralForCausalLM'];
    });
    await expect(Model.load(dir)).rejects.toThrow(/unknown architecture "MistralForCausalLM"/);
    expect(() => Model.init({ ...tinyConfig(), architecture: 'GPT2' as never }, { seed: 1 })).toThrow(
      /unknown architecture/,
    );
  });

  it('missing tensor', async () => {
    const dir = join(tmp, 'missing');
    await keep(Model.init(tinyConfig(), { seed: 1 })).save(dir);
    await rewriteTensors(dir, (name, shape, data) =>
      name === 'model.layers.1.mlp.up_proj.weight' ? null : { shape, data },
    );
    await expect(Model.load(dir)).rejects.toThrow(/missing tensor model\.layers\.1\.mlp\.up_proj\.weight/);
  });

  it('mis-shaped tensor', async () => {
    const dir = join(tmp, 'shape');
    await keep(Model.init(tinyConfig(), { seed: 1 })).save(dir);
    await rewriteTensors(dir, (name, shape, data) =>
      name === 'model.layers.0.self_attn.o_proj.weight'
        ? { shape: [32, 16], data: data.subarray(0, 32 * 16 * 4) }
        : { shape, data },
    );
    await expect(Model.load(dir)).rejects.toThrow(/o_proj\.weight has shape \[32, 16\], expected \[32, 32\]/);
  });

  it('missing files', async () => {
    await expect(Model.load(join(tmp, 'nope'))).rejects.toThrow(/config\.json: not found/);
    const dir = join(tmp, 'noweights');
    await keep(Model.init(tinyConfig(), { seed: 1 })).save(dir);
    rmSync(join(dir, 'model.safetensors'));
    await expect(Model.load(dir)).rejects.toThrow(/no model\.safetensors/);
  });

  it('token id >= vocab size, bad prompt length', async () => {
    const m = keep(Model.init(tinyConfig(), { seed: 1 }));
    await expect(m.score({ sequences: [[1, 2, 64]], promptLengths: [1] })).rejects.toThrow(
      /token id 64 at position 2 of sequence 0 is outside the vocabulary \(size 64\)/,
    );
    await expect(m.score({ sequences: [[1, 2]], promptLengths: [3] })).rejects.toThrow(/promptLength 3/);
    await expect(m.generate([[1, 99]], { maxNewTokens: 2, eosTokenIds: [] })).rejects.toThrow(/token id 99/);
  });
});

describe('optimizer state', () => {
  it('saveOptimizer/loadOptimizer resumes AdamW exactly', async () => {
    const cfg = tinyConfig();
    const a = keep(Model.init(cfg, { seed: 9 }));
    const train = async (m: Model, steps: number) => {
      for (let s = 0; s < steps; s++) {
        m.zeroGrad();
        const r = await m.score(batch, { grad: true });
        await m.backward(r.handle!, { sumLogp: [-1, -1] });
        await m.step({ lr: 1e-2 });
      }
    };
    await train(a, 2);
    const dir = join(tmp, 'resume');
    await a.save(dir);
    await a.saveOptimizer(join(dir, 'optimizer.safetensors'));
    const b = keep(await Model.load(dir));
    await b.loadOptimizer(join(dir, 'optimizer.safetensors'));
    expect(b.optimizerStep).toBe(2);
    await train(a, 2);
    await train(b, 2);
    expect(b.weightsHash()).toBe(a.weightsHash());
    // a fresh optimizer (no state) ends elsewhere
    const c = keep(await Model.load(dir));
    await train(c, 2);
    expect(c.weightsHash()).not.toBe(a.weightsHash());
    // wrong model
    const other = keep(Model.init(tinyConfig({ hiddenSize: 64 }), { seed: 1 }));
    await expect(other.loadOptimizer(join(dir, 'optimizer.safetensors'))).rejects.toThrow(/different model/);
  });
});
