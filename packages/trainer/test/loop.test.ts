// loop.ts: the check that every rank holds the same weights.
import { describe, expect, it } from 'vitest';
import { assertRanksAgree } from '../src/loop.js';

describe('rank agreement check', () => {
  // An in-process stand-in for two ranks: the "other" rank contributes `otherHash`.
  const pairComm = (otherHash: string) => ({
    rank: 0,
    worldSize: 2,
    async allReduceSum(buf: Float32Array) {
      for (let i = 0; i < buf.length; i++) buf[i]! += Number.parseInt(otherHash.slice(i * 4, i * 4 + 4), 16);
    },
  });
  const h = 'ab'.repeat(32);

  it('passes when every rank holds the same weights and names the step when one differs', async () => {
    await expect(assertRanksAgree(pairComm(h), h, 7)).resolves.toBeUndefined();
    const other = `ac${h.slice(2)}`;
    await expect(assertRanksAgree(pairComm(other), h, 7)).rejects.toThrow(
      /weights differ across ranks at step 7/,
    );
  });
});
