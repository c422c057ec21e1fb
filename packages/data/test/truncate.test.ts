// Truncation as LLaMA-Factory's infer_seqlen, plus the "≥ 1 response token" and drop rules.
import { describe, expect, it } from 'vitest';
import { inferSeqlen, Rng, truncatePair, truncateSingle } from '../src/index.js';

const seq = (n: number, start = 0) => Array.from({ length: n }, (_, i) => start + i);

describe('inferSeqlen (LLaMA-Factory)', () => {
  it('hand-worked cases', () => {
    // short response (2·5 < 20): kept whole; the prompt gets the rest (10 fits)
    expect(inferSeqlen(10, 5, 20)).toEqual([10, 5]);
    // prompt shortened first: 30 → 20 − 5 = 15
    expect(inferSeqlen(30, 5, 20)).toEqual([15, 5]);
    // short prompt (2·5 < 20): kept whole; the response gets 20 − 5 = 15
    expect(inferSeqlen(5, 30, 20)).toEqual([5, 15]);
    // both long: response gets trunc(20 · 30/60) = 10, prompt 10
    expect(inferSeqlen(30, 30, 20)).toEqual([10, 10]);
    // both long: trunc(20 · 30/42) = trunc(14.28) = 14, prompt min(20 − 14, 12) = 6
    expect(inferSeqlen(12, 30, 20)).toEqual([6, 14]);
    // a long prompt can leave 0 response tokens: trunc(16 · 10/1010) = 0 → [16, 0]
    expect(inferSeqlen(1000, 10, 16)).toEqual([16, 0]);
  });
});

describe('truncatePair', () => {
  it('keeps heads, cuts chosen and rejected to one budget', () => {
    // prompt 4, chosen 3, rejected 10, cutoff 10: 2·10 ≥ 10, 2·4 < 10 → response budget 10 − 4 = 6
    const r = truncatePair(seq(4), seq(3, 100), seq(10, 200), { cutoffLen: 10 });
    expect(r).toEqual({
      ok: true,
      truncated: true,
      promptIds: [0, 1, 2, 3],
      chosenIds: [100, 101, 102],
      rejectedIds: [200, 201, 202, 203, 204, 205],
    });
    expect(truncatePair(seq(4), seq(3), seq(3), { cutoffLen: 10 })).toMatchObject({
      ok: true,
      truncated: false,
    });
  });

  it('a prompt that fills the budget: dropped by default, or cut to leave one response token', () => {
    expect(truncatePair(seq(16), seq(3), seq(3), { cutoffLen: 16 })).toEqual({
      ok: false,
      reason: 'prompt alone (16 tokens) fills the cutoff of 16',
    });
    // LLaMA-Factory would keep [16, 0]; we keep 15 prompt tokens and 1 response token
    const r = truncatePair(seq(1000), seq(10), seq(12), { cutoffLen: 16, promptOverflow: 'truncate' });
    expect(r).toMatchObject({ ok: true, promptIds: seq(15), chosenIds: [0], rejectedIds: [0] });
  });

  it('unusable pairs', () => {
    expect(truncatePair([], [1], [2], { cutoffLen: 8 })).toEqual({
      ok: false,
      reason: 'prompt has no tokens',
    });
    expect(truncatePair([1], [], [2], { cutoffLen: 8 })).toEqual({
      ok: false,
      reason: 'chosen response has no tokens',
    });
    expect(truncatePair([1], [2], [], { cutoffLen: 8 })).toEqual({
      ok: false,
      reason: 'rejected response has no tokens',
    });
    expect(() => truncatePair([1], [2], [3], { cutoffLen: 1 })).toThrow(RangeError);
  });

  it('invariants on random lengths', () => {
    const rng = Rng.seeded(1);
    for (let trial = 0; trial < 5000; trial++) {
      const cutoff = 2 + rng.int(64);
      const [p, c, r] = [1 + rng.int(100), 1 + rng.int(100), 1 + rng.int(100)];
      const mode = rng.int(2) === 0 ? 'drop' : 'truncate';
      const out = truncatePair(seq(p), seq(c, 1000), seq(r, 2000), {
        cutoffLen: cutoff,
        promptOverflow: mode,
      });
      if (!out.ok) {
        expect(mode === 'drop' && p >= cutoff).toBe(true);
        continue;
      }
      const t = Math.max(out.chosenIds.length, out.rejectedIds.length);
      // within budget, prompt and responses are heads, chosen/rejected share the response budget
      expect(out.promptIds.length + t).toBeLessThanOrEqual(cutoff);
      expect(out.promptIds).toEqual(seq(out.promptIds.length));
      expect(out.chosenIds).toEqual(seq(Math.min(c, t), 1000));
      expect(out.rejectedIds).toEqual(seq(Math.min(r, t), 2000));
      expect(out.chosenIds.length).toBeGreaterThanOrEqual(1);
      expect(out.rejectedIds.length).toBeGreaterThanOrEqual(1);
      // nothing is cut when it fits
      if (p + Math.max(c, r) <= cutoff) expect(out.truncated).toBe(false);
      // same as LLaMA-Factory whenever its answer keeps a response token
      const [s, tt] = inferSeqlen(p, Math.max(c, r), cutoff);
      if (tt >= 1) {
        expect(out.promptIds.length).toBe(s);
        expect(t).toBe(tt);
      }
    }
  });

  it('truncateSingle follows the same rules', () => {
    // short response (2·5 < 20) kept whole; the prompt is shortened first: 18 → 15
    expect(truncateSingle(seq(18), seq(5), { cutoffLen: 20 })).toMatchObject({
      ok: true,
      truncated: true,
      promptIds: seq(15),
      responseIds: seq(5),
    });
    expect(truncateSingle(seq(30), seq(5), { cutoffLen: 20 })).toMatchObject({ ok: false });
    expect(truncateSingle(seq(3), [], { cutoffLen: 20 })).toEqual({
      ok: false,
      reason: 'response has no tokens',
    });
  });
});
