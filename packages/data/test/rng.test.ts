// PRNG known answers and serialisable state. (The Batcher tested here once is gone: nothing used it; the
// trainer orders its data itself, packages/trainer order.ts.)
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/index.js';

/** A seeded permutation of 0..n−1 (the data package's `permutation` until nothing but this test used it). */
const permutation = (n: number, seed: number | string) =>
  Rng.seeded(seed).shuffle(Array.from({ length: n }, (_, i) => i));

describe('Rng (xoshiro128**)', () => {
  it('matches the reference generator from state {1, 2, 3, 4}', () => {
    // result = rotl(s1·5, 7)·9 = rotl(10, 7)·9 = 1280·9 = 11520; then s1 becomes 0 → 0; then 5145·128·9 = 5927040
    const r = Rng.fromState({ algorithm: 'xoshiro128**', s: [1, 2, 3, 4] });
    expect([r.nextU32(), r.nextU32(), r.nextU32(), r.nextU32()]).toEqual([11520, 0, 5927040, 70819200]);
  });

  it('state survives JSON and continues the same stream', () => {
    const a = Rng.seeded(1234);
    for (let i = 0; i < 5; i++) a.nextU32();
    const saved = JSON.parse(JSON.stringify(a.state()));
    const b = Rng.fromState(saved);
    const xs = Array.from({ length: 10 }, () => a.float());
    const ys = Array.from({ length: 10 }, () => b.float());
    expect(ys).toEqual(xs);
    expect(() => Rng.fromState({ algorithm: 'xoshiro128**', s: [0, 0, 0, 0] })).toThrow();
    expect(() => Rng.fromState({ algorithm: 'xoshiro128**', s: [1, 2, 3] } as never)).toThrow(TypeError);
  });

  it('seeds are deterministic and distinct', () => {
    expect(Rng.seeded(7).state()).toEqual(Rng.seeded(7).state());
    expect(Rng.seeded(7).state()).not.toEqual(Rng.seeded(8).state());
    expect(Rng.seeded(2 ** 40).state()).not.toEqual(Rng.seeded(0).state());
    expect(Rng.seeded('a').state()).not.toEqual(Rng.seeded('b').state());
  });

  it('int is in range and roughly uniform; shuffle permutes', () => {
    const r = Rng.seeded(99);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60000; i++) counts[r.int(6)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(400);
    for (let i = 0; i < 1000; i++) {
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
    }
    const p = permutation(100, 5);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(p).toEqual(permutation(100, 5));
    expect(p).not.toEqual(permutation(100, 6));
  });
});
