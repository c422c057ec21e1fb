// PRNG known answers, serialisable state, and a batcher that resumes exactly.
import { describe, expect, it } from 'vitest';
import { Batcher, permutation, Rng } from '../src/index.js';

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

describe('Batcher', () => {
  const items = Array.from({ length: 23 }, (_, i) => `x${i}`);

  it('each epoch yields every item once, in a new order', () => {
    const b = new Batcher(items, { batchSize: 5, seed: 3 });
    expect(b.batchesPerEpoch).toBe(5);
    const epochs: number[][] = [[], []];
    for (let i = 0; i < 10; i++) {
      const batch = b.next();
      expect(batch.index).toBe(i % 5);
      expect(batch.items).toEqual(batch.indices.map((j) => items[j]));
      epochs[batch.epoch]!.push(...batch.indices);
      expect(batch.indices.length).toBe(i % 5 === 4 ? 3 : 5);
    }
    for (const e of epochs) expect([...e].sort((a, b) => a - b)).toEqual(items.map((_, i) => i));
    expect(epochs[0]).not.toEqual(epochs[1]);
  });

  it('resuming from a saved cursor continues exactly as an uninterrupted run', () => {
    const straight = new Batcher(items, { batchSize: 4, seed: 11 });
    const all = Array.from({ length: 20 }, () => straight.next());
    for (const stop of [0, 1, 5, 6, 13]) {
      const first = new Batcher(items, { batchSize: 4, seed: 11 });
      for (let i = 0; i < stop; i++) first.next();
      const cursor = JSON.parse(JSON.stringify(first.cursor()));
      const resumed = new Batcher(items, { batchSize: 4, seed: 11 }, cursor);
      const rest = Array.from({ length: 20 - stop }, () => resumed.next());
      expect(rest).toEqual(all.slice(stop));
    }
  });

  it('dropLast and no shuffling', () => {
    const b = new Batcher(items, { batchSize: 5, seed: 0, shuffle: false, dropLast: true });
    expect(b.batchesPerEpoch).toBe(4);
    const seen = Array.from({ length: 5 }, () => b.next());
    expect(seen[0]!.indices).toEqual([0, 1, 2, 3, 4]);
    expect(seen[3]!.indices).toEqual([15, 16, 17, 18, 19]);
    expect(seen[4]).toMatchObject({ epoch: 1, index: 0, indices: [0, 1, 2, 3, 4] });
  });

  it('refuses a cursor from other data or settings', () => {
    const c = new Batcher(items, { batchSize: 4, seed: 11 }).cursor();
    expect(() => new Batcher(items.slice(1), { batchSize: 4, seed: 11 }, c)).toThrow(/cursor size is 23/);
    expect(() => new Batcher(items, { batchSize: 4, seed: 12 }, c)).toThrow(/cursor seed is 11/);
    expect(() => new Batcher(items, { batchSize: 4, seed: 11 }, { ...c, position: 99 })).toThrow(
      /bad cursor/,
    );
    expect(() => new Batcher([], { batchSize: 4, seed: 1 })).toThrow(RangeError);
  });
});
