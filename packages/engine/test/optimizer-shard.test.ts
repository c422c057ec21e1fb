// ZeRO's building blocks against Model.step: AdamW applied shard by shard, with the global norm
// assembled from per-block partial sums, must give the unsharded update bit for bit.
import { describe, expect, it } from 'vitest';
import { adamwShard, Model, normBlock, sumSquaresBlocks } from '../src/index.js';
import { tinyConfig } from './helpers.js';

const opts = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

function fillGrads(g: Float32Array, step: number): void {
  for (let i = 0; i < g.length; i++) g[i] = Math.sin(i * 0.013 + step) * (1 + (i % 7)) * 0.01;
}

describe('AdamW over shards (ZeRO building blocks)', () => {
  for (const maxGradNorm of [0, 0.5]) {
    it(`two shards on a norm-block boundary reproduce Model.step bit for bit (maxGradNorm ${maxGradNorm})`, async () => {
      const cfg = tinyConfig({ vocabSize: 512, hiddenSize: 64, intermediateSize: 128 });
      const whole = Model.init(cfg, { seed: 9, threads: 2 });
      const sharded = Model.init(cfg, { seed: 9, threads: 1 });
      const B = normBlock();
      expect(B).toBe(65536); // the block size of gradNorm in csrc/optimizer.cpp
      const P = whole.numParameters;
      expect(P).toBeGreaterThan(2 * B); // several blocks, so the shards' partials matter
      const cut = B; // shard 0 = block 0, shard 1 = the rest
      const m = new Float32Array(P);
      const v = new Float32Array(P);
      for (let step = 1; step <= 3; step++) {
        fillGrads(whole.gradBuffer(), step);
        const { gradNorm } = await whole.step({ ...opts, maxGradNorm });

        const g = sharded.gradBuffer();
        fillGrads(g, step);
        const parts = [...sumSquaresBlocks(g.subarray(0, cut)), ...sumSquaresBlocks(g.subarray(cut))];
        const norm = Math.sqrt(parts.reduce((a, b) => a + b, 0));
        expect(norm).toBe(gradNorm);
        const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
        if (maxGradNorm > 0) expect(clip).toBeLessThan(1);
        const p = sharded.paramBuffer();
        for (const [a, b] of [
          [0, cut],
          [cut, P],
        ] as const) {
          const sl = (x: Float32Array) => x.subarray(a, b);
          adamwShard({ p: sl(p), g: sl(g), m: sl(m), v: sl(v) }, opts, step, clip, 2);
        }
        sharded.syncParams();
        expect(sharded.weightsHash()).toBe(whole.weightsHash());
      }
      whole.dispose();
      sharded.dispose();
    });
  }

  it('rejects mismatched shard lengths and a step below 1', () => {
    const a = new Float32Array(4);
    expect(() => adamwShard({ p: a, g: new Float32Array(3), m: a, v: a }, opts, 1, 1)).toThrow(/same length/);
    expect(() => adamwShard({ p: a, g: a, m: a, v: a }, opts, 0, 1)).toThrow(/step must be >= 1/);
  });
});
