// Held-out split by prompt group: every translation of a prompt lands on the same side.
import { hash53 } from './hash.js';

export interface SplitOptions<T> {
  /** Share of prompt groups held out, in [0, 1]. */
  heldOutFraction: number;
  seed: number;
  /** Prompt-group key (default: row.group). */
  key?: (row: T) => string;
}

export interface Split<T> {
  train: T[];
  heldOut: T[];
  /** Held-out group keys, sorted. */
  heldOutGroups: string[];
}

/**
 * Deterministic in (seed, set of group keys): groups are ranked by a seeded hash of their key and the first
 * round(fraction × groups) are held out (at least one and at most all but one when 0 < fraction < 1). Row order
 * is kept on both sides. Adding rows to existing groups never moves a group across.
 */
export function splitByGroup<T extends { group: string }>(
  rows: readonly T[],
  opts: SplitOptions<T>,
): Split<T>;
export function splitByGroup<T>(
  rows: readonly T[],
  opts: SplitOptions<T> & { key: (row: T) => string },
): Split<T>;
export function splitByGroup<T>(rows: readonly T[], opts: SplitOptions<T>): Split<T> {
  const f = opts.heldOutFraction;
  if (!(f >= 0 && f <= 1)) throw new RangeError(`heldOutFraction must be in [0, 1], got ${f}`);
  if (!Number.isSafeInteger(opts.seed)) throw new RangeError(`seed must be a safe integer, got ${opts.seed}`);
  const key = opts.key ?? ((r: T) => (r as { group: string }).group);
  const keys = [...new Set(rows.map(key))];
  const seed = opts.seed | 0;
  const seedHi = Math.floor(opts.seed / 2 ** 32) | 0;
  const rank = new Map(keys.map((k) => [k, hash53(k, seed) + hash53(k, seedHi ^ 0x5bd1e995) / 2 ** 53]));
  keys.sort((a, b) => rank.get(a)! - rank.get(b)! || (a < b ? -1 : a > b ? 1 : 0));
  let k = Math.round(f * keys.length);
  if (f > 0 && f < 1 && keys.length >= 2) k = Math.min(Math.max(k, 1), keys.length - 1);
  const held = new Set(keys.slice(0, k));
  const train: T[] = [];
  const heldOut: T[] = [];
  for (const r of rows) (held.has(key(r)) ? heldOut : train).push(r);
  return { train, heldOut, heldOutGroups: [...held].sort() };
}
