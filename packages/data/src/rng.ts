// xoshiro128** (Blackman & Vigna): a small, fast PRNG whose whole state is four uint32s, so a checkpoint can
// store it and a resumed run draws exactly the numbers an uninterrupted one would.
import { hash53 } from './hash.js';

export interface RngState {
  algorithm: 'xoshiro128**';
  s: [number, number, number, number];
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** splitmix32: spreads a seed over the state so that nearby seeds give unrelated streams. */
function splitmix32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x9e3779b9) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  private readonly s: Uint32Array;

  private constructor(s: ArrayLike<number>) {
    this.s = Uint32Array.from(s);
    if (this.s.every((x) => x === 0)) throw new RangeError('xoshiro128** state must not be all zero');
  }

  /** A generator seeded from a safe integer or a string. */
  static seeded(seed: number | string): Rng {
    let lo: number;
    let hi: number;
    if (typeof seed === 'string') {
      const h = hash53(seed);
      lo = h >>> 0;
      hi = Math.floor(h / 2 ** 32);
    } else {
      if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
      lo = seed >>> 0;
      hi = Math.floor(seed / 2 ** 32) >>> 0;
    }
    const sm = splitmix32(lo ^ Math.imul(hi, 0x27d4eb2d));
    const s = [sm(), sm(), sm(), sm()];
    if (!s.some((x) => x !== 0)) s[0] = 1;
    return new Rng(s);
  }

  /** A generator continuing exactly from a saved state. */
  static fromState(state: RngState): Rng {
    if (state?.algorithm !== 'xoshiro128**' || !Array.isArray(state.s) || state.s.length !== 4) {
      throw new TypeError(`not an xoshiro128** state: ${JSON.stringify(state)}`);
    }
    for (const x of state.s) {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff)
        throw new TypeError(`state word ${x} is not a uint32`);
    }
    return new Rng(state.s);
  }

  /** A JSON-serialisable copy of the state. */
  state(): RngState {
    return { algorithm: 'xoshiro128**', s: [this.s[0]!, this.s[1]!, this.s[2]!, this.s[3]!] };
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  float(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), without modulo bias (rejection sampling), for 1 ≤ n ≤ 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32)
      throw new RangeError(`int(n) needs 1 ≤ n ≤ 2^32, got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = a[i]!;
      a[i] = a[j]!;
      a[j] = tmp;
    }
    return a;
  }
}
