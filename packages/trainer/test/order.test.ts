// order.ts: seeded data order and sharding across ranks.
import { describe, expect, it } from 'vitest';
import { chunks, epochOrder, shard } from '../src/order.js';

describe('data order', () => {
  it('is a seeded permutation, different per epoch, identical on replay', () => {
    const a = epochOrder(100, 7, 0);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(100).keys()]);
    expect(epochOrder(100, 7, 0)).toEqual(a);
    expect(epochOrder(100, 7, 1)).not.toEqual(a);
    expect(epochOrder(100, 8, 0)).not.toEqual(a);
  });

  it('shards a global batch into contiguous near-equal parts', () => {
    const batch = [9, 8, 7, 6, 5];
    expect([0, 1].map((r) => shard(batch, r, 2))).toEqual([
      [9, 8, 7],
      [6, 5],
    ]);
    expect([0, 1, 2].flatMap((r) => shard(batch, r, 3))).toEqual(batch);
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
  });
});
