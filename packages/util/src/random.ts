/**
 * mulberry32: a small, fast 32-bit PRNG with good statistical quality, uniform
 * in [0, 1). Seeded runs must draw the same numbers on every machine and Node
 * version, which Math.random cannot promise: the trainer's data order
 * (packages/trainer order.ts) and random search (packages/queue rng.ts) use it.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
