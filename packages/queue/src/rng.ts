// A small seeded PRNG (SplitMix32 seeding a Mulberry32 stream): random search
// must draw the same trials from the same seed on every machine and Node
// version, which Math.random cannot promise.
import { mulberry32 } from '@mpo/util';

export class SeededRandom {
  /** Uniform in [0, 1). */
  readonly next: () => number;

  constructor(seed: number) {
    // SplitMix-style scramble so nearby seeds give unrelated streams.
    let z = (seed >>> 0) + 0x9e3779b9;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    this.next = mulberry32((z ^ (z >>> 16)) >>> 0);
  }

  /** Integer in [min, max], inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}
