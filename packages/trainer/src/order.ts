// Seeded data order. Each epoch's permutation is a pure function of (seed,
// epoch), so the trainer's whole data RNG state is (seed, epoch, cursor): a
// resumed run replays exactly the batches an uninterrupted one would see.
import { mulberry32 } from '@mpo/util';

/** Fisher–Yates permutation of 0..n-1 for (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rand = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Contiguous part `rank` of `items` split into `worldSize` near-equal parts. */
export function shard<T>(items: readonly T[], rank: number, worldSize: number): T[] {
  const base = Math.floor(items.length / worldSize);
  const extra = items.length % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return items.slice(start, start + base + (rank < extra ? 1 : 0));
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
