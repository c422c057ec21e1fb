// Held-out split by prompt on the real MPO data.
import { describe, expect, it } from 'vitest';
import { loadMpoJson, type MpoRow, splitByGroup } from '../src/index.js';
import { MPO_FILES } from './helpers.js';

const rows = loadMpoJson(MPO_FILES.llama).rows;

function invariants(train: MpoRow[], heldOut: MpoRow[]) {
  const trainGroups = new Set(train.map((r) => r.group));
  for (const r of heldOut) expect(trainGroups.has(r.group), `${r.id} straddles`).toBe(false);
  expect(train.length + heldOut.length).toBe(rows.length);
  expect(new Set([...train, ...heldOut].map((r) => r.id)).size).toBe(rows.length);
  // order kept on both sides
  for (const side of [train, heldOut]) {
    const idx = side.map((r) => r.index);
    expect(idx).toEqual([...idx].sort((a, b) => a - b));
  }
}

describe('splitByGroup', () => {
  it('never splits the translations of one prompt', () => {
    for (const seed of [0, 1, 42, 2 ** 40 + 7]) {
      const s = splitByGroup(rows, { heldOutFraction: 0.1, seed });
      invariants(s.train, s.heldOut);
      expect(s.heldOutGroups).toHaveLength(10);
      // every held-out group carries all its languages (llama row 505 was dropped: 5 or 6 per group)
      const langs = new Map<string, Set<string>>();
      for (const r of s.heldOut) langs.set(r.group, (langs.get(r.group) ?? new Set()).add(r.lang));
      for (const l of langs.values()) expect(l.size).toBeGreaterThanOrEqual(5);
    }
  });

  it('is deterministic in the seed, and the seed matters', () => {
    const a = splitByGroup(rows, { heldOutFraction: 0.2, seed: 7 });
    const b = splitByGroup([...rows].reverse(), { heldOutFraction: 0.2, seed: 7 });
    expect(a.heldOutGroups).toEqual(b.heldOutGroups);
    const c = splitByGroup(rows, { heldOutFraction: 0.2, seed: 8 });
    expect(c.heldOutGroups).not.toEqual(a.heldOutGroups);
  });

  it('a larger fraction only adds groups (nested splits)', () => {
    const small = new Set(splitByGroup(rows, { heldOutFraction: 0.1, seed: 3 }).heldOutGroups);
    const big = new Set(splitByGroup(rows, { heldOutFraction: 0.3, seed: 3 }).heldOutGroups);
    for (const g of small) expect(big.has(g)).toBe(true);
  });

  it('bounds and custom keys', () => {
    expect(splitByGroup(rows, { heldOutFraction: 0, seed: 1 }).heldOut).toEqual([]);
    expect(splitByGroup(rows, { heldOutFraction: 1, seed: 1 }).train).toEqual([]);
    // a tiny fraction still holds out one group; a fraction near 1 still trains on one
    expect(splitByGroup(rows, { heldOutFraction: 0.001, seed: 1 }).heldOutGroups).toHaveLength(1);
    expect(splitByGroup(rows, { heldOutFraction: 0.999, seed: 1 }).heldOutGroups).toHaveLength(99);
    const byLang = splitByGroup(rows, { heldOutFraction: 0.5, seed: 1, key: (r) => r.lang });
    expect(byLang.heldOutGroups).toHaveLength(3);
    expect(() => splitByGroup(rows, { heldOutFraction: 1.5, seed: 1 })).toThrow(RangeError);
  });
});
