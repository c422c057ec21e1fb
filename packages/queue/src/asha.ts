// Asynchronous successive halving (ASHA, Li et al. 2020), in its stopping form:
// every trial is started at once, and when one reaches a rung it is compared
// with the trials that reached that rung before it. It continues only when it
// ranks in the top 1/η of them; otherwise it is STOPPED with the rung and the
// reason. Pure functions here; rungs.ts stores the results in Redis.
import type { AshaParams, RunSpec } from './spec.js';

/**
 * Decision rungs in steps: minSteps·η^k below maxSteps (maxSteps itself is
 * where surviving trials simply finish). minSteps 100, maxSteps 2700, η 3 →
 * [100, 300, 900].
 */
export function ashaRungs({ minSteps, maxSteps, reductionFactor }: AshaParams): number[] {
  if (!(Number.isInteger(minSteps) && minSteps >= 1)) throw new RangeError('minSteps must be an integer ≥ 1');
  if (!(Number.isInteger(maxSteps) && maxSteps > minSteps))
    throw new RangeError('maxSteps must be an integer > minSteps');
  if (!(Number.isInteger(reductionFactor) && reductionFactor >= 2))
    throw new RangeError('reductionFactor must be an integer ≥ 2');
  const rungs: number[] = [];
  for (let r = minSteps; r < maxSteps; r *= reductionFactor) rungs.push(r);
  return rungs;
}

/** A run's decision rungs: those its train jobs are given, and GET /runs/:id shows; none when the search is not ASHA. */
export function runRungs(search: Pick<RunSpec['search'], 'asha'> | undefined): number[] {
  return search?.asha ? ashaRungs(search.asha) : [];
}

export interface RungResult {
  trialId: string;
  value: number;
  /** Arrival order at this rung (1 = first); results that arrived after the candidate are ignored. */
  order?: number;
}

export interface AshaDecision {
  action: 'promote' | 'stop';
  /** Rung index (0 = first rung); stored as Trial.stoppedAtRung when stopped. */
  rung: number;
  /** 1-based rank of the candidate among the `considered` results (ties rank in its favour). */
  rank: number;
  /** How many of the considered results continue: max(1, floor(considered / η)). */
  keep: number;
  considered: number;
  reason: string;
}

/**
 * Decides whether `trialId` continues past rung `rung`. `rungResults` holds what
 * was recorded at this rung, including the candidate's own value; only results
 * recorded no later than the candidate's are compared, so the decision is the
 * same however often it is recomputed (a resumed trial gets its old answer).
 * NaN metrics rank last; a NaN candidate is always stopped.
 */
export function ashaDecision(
  rungResults: readonly RungResult[],
  trialId: string,
  opts: { mode: 'min' | 'max'; reductionFactor: number; rung: number; step?: number; metric?: string },
): AshaDecision {
  const self = rungResults.find((r) => r.trialId === trialId);
  if (!self) throw new Error(`ashaDecision: no result for trial ${trialId} at rung ${opts.rung}`);
  const considered = rungResults.filter(
    (r) => self.order === undefined || r.order === undefined || r.order <= self.order,
  );
  const n = considered.length;
  const keep = Math.max(1, Math.floor(n / opts.reductionFactor));
  const metric = opts.metric ?? 'metric';
  const at = opts.step === undefined ? `rung ${opts.rung}` : `rung ${opts.rung} (step ${opts.step})`;
  if (Number.isNaN(self.value)) {
    return {
      action: 'stop',
      rung: opts.rung,
      rank: n,
      keep,
      considered: n,
      reason: `${at}: ${metric} is NaN`,
    };
  }
  const better = (a: number, b: number) =>
    Number.isNaN(b) ? !Number.isNaN(a) : opts.mode === 'max' ? a > b : a < b;
  const rank = 1 + considered.filter((r) => r.trialId !== trialId && better(r.value, self.value)).length;
  const action = rank <= keep ? 'promote' : 'stop';
  const reason =
    action === 'promote'
      ? `${at}: ${metric} = ${self.value} ranks ${rank} of ${n}; the top ${keep} continue`
      : `${at}: ${metric} = ${self.value} ranks ${rank} of ${n}; only the top ${keep} (1/${opts.reductionFactor}) continue`;
  return { action, rung: opts.rung, rank, keep, considered: n, reason };
}
