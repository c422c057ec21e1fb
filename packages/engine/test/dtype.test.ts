// Compute dtypes other than float32, and the CUDA path (skipped unless the addon was built against a
// CUDA libtorch and a GPU is present).
import { afterAll, describe, expect, it } from 'vitest';
import { engineInfo, Model } from '../src/index.js';
import { goldenDir, randomTokens, tinyConfig } from './helpers.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});
const seqs = [randomTokens(1, 20, 64), randomTokens(2, 13, 64)];
const batch = { sequences: seqs, promptLengths: [5, 4] };

describe('bfloat16 compute on the CPU', () => {
  it('scores like float32 within bf16 rounding, trains with fp32 master weights', async () => {
    const f32 = Model.init(tinyConfig(), { seed: 4 });
    const bf16 = Model.init(tinyConfig(), { seed: 4, dtype: 'bfloat16' });
    models.push(f32, bf16);
    expect(bf16.weightsHash()).toBe(f32.weightsHash()); // same fp32 master weights
    const a = await f32.score(batch, { pooling: ['mean'] });
    const b = await bf16.score(batch, { grad: true, pooling: ['mean'] });
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(a.sumLogp[i]! / a.tokens[i]! - b.sumLogp[i]! / b.tokens[i]!)).toBeLessThan(0.05);
    }
    await bf16.backward(b.handle!, { sumLogp: [1, 1], meanHidden: new Float32Array(2 * 32).fill(0.01) });
    expect(bf16.gradNorm()).toBeGreaterThan(0);
    const before = bf16.weightsHash();
    await bf16.step({ lr: 1e-2 });
    expect(bf16.weightsHash()).not.toBe(before);
    const gen = await bf16.generate([seqs[0]!.slice(0, 5)], { maxNewTokens: 4, eosTokenIds: [] });
    expect(gen[0]!.length).toBe(4);
  });

  it('float16 compute is refused on the CPU with a message that says why', () => {
    expect(() => Model.init(tinyConfig(), { seed: 1, dtype: 'float16' })).toThrow(
      /float16 compute needs a CUDA device/,
    );
  });
});

const cuda = engineInfo().cudaBuild;
describe.skipIf(!cuda)('CUDA (addon built against a CUDA libtorch)', () => {
  it('golden fixture on cuda:0 in float32 within 1e-4', async () => {
    const cpu = await Model.load(goldenDir);
    const gpu = await Model.load(goldenDir, { device: 'cuda:0' });
    models.push(cpu, gpu);
    const a = await cpu.score(batch);
    const b = await gpu.score(batch);
    for (let i = 0; i < 2; i++)
      expect(Math.abs(a.sumLogp[i]! - b.sumLogp[i]!) / a.tokens[i]!).toBeLessThan(1e-4);
  });
});
