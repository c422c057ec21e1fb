// Reading scores out of the engine's structures with shape checks. A wrong shape or a non-finite score is a bug
// upstream; failing here with the group and field named is far cheaper than a NaN loss three layers later.
import type { FloatArray, GroupName, Pooling, ScoresByGroup, SequenceScores } from './types.js';

export class ScoreError extends Error {
  override name = 'ScoreError';
}

type Side = 'policy' | 'reference';

function fail(side: Side, group: GroupName, msg: string): never {
  throw new ScoreError(`${side}.${group}: ${msg}`);
}

function checkFinite(side: Side, group: GroupName, field: string, a: ArrayLike<number>): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) fail(side, group, `${field}[${i}] is ${a[i]}`);
  }
}

/** The group's scores; throws when missing or when its batch size differs from n. */
export function getGroup(scores: ScoresByGroup, side: Side, group: GroupName, n?: number): SequenceScores {
  const g = scores[group];
  if (!g) fail(side, group, 'missing (not scored)');
  if (!Number.isInteger(g.n) || g.n < 1) fail(side, group, `n must be a positive integer, got ${g.n}`);
  if (n !== undefined && g.n !== n) fail(side, group, `batch size ${g.n} differs from ${n}`);
  return g;
}

/** Per-sequence response token counts, each ≥ 1 (an average over zero tokens has no meaning). */
export function getTokens(g: SequenceScores, side: Side, group: GroupName): Int32Array {
  const t = g.tokens;
  if (!t || t.length !== g.n) fail(side, group, `tokens: expected length ${g.n}, got ${t?.length}`);
  for (let i = 0; i < t.length; i++) {
    if (!(t[i]! >= 1)) fail(side, group, `tokens[${i}] = ${t[i]}, need ≥ 1 response token`);
  }
  return t;
}

/** A per-sequence field: present, one finite value per sequence. */
function perSequence(g: SequenceScores, side: Side, group: GroupName, field: 'sumLogp' | 'kl'): Float64Array {
  const v = g[field];
  if (!v || v.length !== g.n) fail(side, group, `${field}: expected length ${g.n}, got ${v?.length}`);
  checkFinite(side, group, field, v);
  return v;
}

export function getSumLogp(g: SequenceScores, side: Side, group: GroupName): Float64Array {
  return perSequence(g, side, group, 'sumLogp');
}

/** log π(y|x) per sequence: the sum over response tokens, or its per-token average when `average`. */
export function getLogps(g: SequenceScores, side: Side, group: GroupName, average: boolean): Float64Array {
  const s = getSumLogp(g, side, group);
  const out = new Float64Array(g.n);
  if (!average) {
    out.set(s);
    return out;
  }
  const t = getTokens(g, side, group);
  for (let i = 0; i < g.n; i++) out[i] = s[i]! / t[i]!;
  return out;
}

/** Chain rule back from d(loss)/d(logp) to d(loss)/d(sumLogp): divide by |y| when logp was an average. */
export function toSumLogpGrad(
  dLogp: Float64Array,
  g: SequenceScores,
  side: Side,
  group: GroupName,
  average: boolean,
): Float64Array {
  if (!average) return dLogp;
  const t = getTokens(g, side, group);
  const out = new Float64Array(g.n);
  for (let i = 0; i < g.n; i++) out[i] = dLogp[i]! / t[i]!;
  return out;
}

export const poolingField = {
  mean: 'meanHidden',
  'mean-unmasked': 'meanUnmaskedHidden',
  last: 'lastHidden',
} as const satisfies Record<Pooling, keyof SequenceScores>;

export function getHidden(g: SequenceScores, side: Side, group: GroupName, pooling: Pooling): FloatArray {
  const field = poolingField[pooling];
  const h = g[field];
  if (!(g.hiddenSize >= 1)) fail(side, group, `hiddenSize must be ≥ 1, got ${g.hiddenSize}`);
  if (!h || h.length !== g.n * g.hiddenSize) {
    fail(side, group, `${field}: expected length ${g.n}*${g.hiddenSize}, got ${h?.length}`);
  }
  checkFinite(side, group, field, h);
  return h;
}

export function getKl(g: SequenceScores, side: Side, group: GroupName): Float64Array {
  return perSequence(g, side, group, 'kl');
}

/** Batch size shared by the listed policy groups. */
export function batchSize(scores: ScoresByGroup, group: GroupName): number {
  return getGroup(scores, 'policy', group).n;
}
