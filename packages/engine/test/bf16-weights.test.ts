// bf16 weight storage (Model weightStorage 'bfloat16', csrc/model.h): weights and gradients are
// bf16 only, for ZeRO's sharded fp32 masters. Against the fp32-stored mixed-precision model holding
// the same (bf16-valued) weights: the forward pass is the same computation, so scores agree to the
// bit; the gradient is the fp32 one rounded once per parameter (one chunk, one backward).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { engineInfo, Model } from '../src/index.js';
import { randomTokens, tinyConfig } from './helpers.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

/** fp32 value of each bf16 bit pattern. */
const widen = (bits: Uint16Array) => {
  const w = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) w[i] = bits[i]! << 16;
  return new Float32Array(w.buffer);
};
/** bf16 bits of fp32 values (round to nearest even, as c10::BFloat16). */
const round = (x: Float32Array) => {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff);
};

describe.skipIf(!engineInfo().bf16Gemm)('bf16 weight storage', () => {
  it('holds the weights as bf16 bits, scores like the fp32-stored bf16 model and rounds its gradient once', async () => {
    const cfg = tinyConfig();
    const dir = mkdtempSync(join(tmpdir(), 'bf16w-'));
    const init = Model.init(cfg, { seed: 3, threads: 1 });
    await init.save(dir, { dtype: 'bfloat16' }); // bf16-valued weights for both
    init.dispose();
    const a = await Model.load(dir, { threads: 1, dtype: 'bfloat16' });
    const b = await Model.load(dir, { threads: 1, dtype: 'bfloat16', weightStorage: 'bfloat16' });
    models.push(a, b);
    expect(b.paramBits().length).toBe(a.numParameters);
    expect(widen(b.paramBits())).toEqual(a.paramBuffer());
    expect(b.weightsHash()).toBe(a.weightsHash());
    expect(() => b.paramBuffer()).toThrow(/stored in bf16/);
    expect(() => b.gradBuffer()).toThrow(/stored in bf16/);
    await expect(b.step({ lr: 1e-3 })).rejects.toThrow(/no fp32 master/);

    const seqs = [randomTokens(7, 24, cfg.vocabSize), randomTokens(8, 24, cfg.vocabSize)];
    const batch = { sequences: seqs, promptLengths: [4, 4] };
    const ra = await a.score(batch, { grad: true });
    const rb = await b.score(batch, { grad: true });
    expect(rb.sumLogp).toEqual(ra.sumLogp);
    await a.backward(ra.handle!, { sumLogp: [1, -0.5] });
    await b.backward(rb.handle!, { sumLogp: [1, -0.5] });
    // Generation (the non-fused path with a KV cache) reads the same weights the same way.
    const gen = { maxNewTokens: 6, eosTokenIds: [] };
    expect(await b.generate([seqs[0]!.slice(0, 5)], gen)).toEqual(
      await a.generate([seqs[0]!.slice(0, 5)], gen),
    );
    const ga = a.gradBuffer();
    const gb = b.gradBits();
    // Every gradient is the fp32 one rounded to bf16 (matrices: the GEMM's fp32 dW rounded by
    // autograd; norms: fp32 leaves added into the bf16 buffer), except where the bf16 embedding
    // backward sums repeated tokens in bf16: there within a few bf16 roundings of the largest.
    const emb = cfg.vocabSize * cfg.hiddenSize;
    expect(gb.subarray(emb)).toEqual(round(ga.subarray(emb)));
    const we = widen(gb.subarray(0, emb));
    let big = 0;
    let err = 0;
    for (let i = 0; i < emb; i++) {
      big = Math.max(big, Math.abs(ga[i]!));
      err = Math.max(err, Math.abs(we[i]! - ga[i]!));
    }
    expect(err).toBeLessThanOrEqual(big * 2 ** -6);
    let nonzero = 0;
    for (const v of gb) if (v !== 0) nonzero++;
    expect(nonzero).toBeGreaterThan(gb.length / 2);

    // Activation checkpointing recomputes each layer in backward from the same bf16 weights: the
    // gradient within one bf16 rounding of the kept-activations one.
    const kept = widen(Uint16Array.from(gb));
    b.zeroGrad();
    b.setActivationCheckpointing(true);
    const rc = await b.score(batch, { grad: true });
    expect(rc.sumLogp).toEqual(rb.sumLogp);
    await b.backward(rc.handle!, { sumLogp: [1, -0.5] });
    b.setActivationCheckpointing(false);
    const recomputed = widen(b.gradBits());
    let gmax = 0;
    let gerr = 0;
    for (let i = 0; i < kept.length; i++) {
      gmax = Math.max(gmax, Math.abs(kept[i]!));
      gerr = Math.max(gerr, Math.abs(kept[i]! - recomputed[i]!));
    }
    expect(gerr).toBeLessThanOrEqual(gmax * 2 ** -7);

    // Writing bits and syncParams() changes what the model computes; save() writes the values.
    const bits = b.paramBits();
    bits.set(round(new Float32Array(bits.length).fill(0.01)));
    b.syncParams();
    const r2 = await b.score(batch);
    expect(r2.sumLogp).not.toEqual(rb.sumLogp);
    const out = join(dir, 'saved');
    await b.save(out);
    const c = await Model.load(out, { threads: 1 });
    models.push(c);
    expect(c.weightsHash()).toBe(b.weightsHash());
  });

  it('refuses the combinations it does not support', () => {
    expect(() => Model.init(tinyConfig(), { seed: 1, threads: 1, weightStorage: 'bfloat16' })).toThrow(
      /needs dtype bfloat16/,
    );
    const m = Model.init(tinyConfig(), { seed: 1, threads: 1, dtype: 'bfloat16', weightStorage: 'bfloat16' });
    models.push(m);
    expect(() => m.enableLora({ rank: 2, alpha: 4, targetModules: ['q_proj'] })).toThrow(
      /bf16 weight storage/,
    );
  });
});
