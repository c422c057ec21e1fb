// Sweep expansion: a valid spec → the list of trials to run. Grid is the
// cartesian product in the space's key order (last key varies fastest),
// capped at maxTrials; random and ASHA draw maxTrials points from a seeded
// stream, so the same spec always plans the same trials and raising
// maxTrials only appends.
import { SeededRandom } from './rng.js';
import type { RunSpec, SpaceDistribution, TrainingParams } from './spec.js';

export interface TrialPlan {
  index: number;
  /** The sampled point: space key → value. */
  params: Record<string, unknown>;
  /** The method's fixed hyperparameters with the sampled ones laid over them. */
  hyperparameters: Record<string, unknown>;
  /** spec.training with the sampled "training.<field>" values laid over it. */
  training: TrainingParams;
  /** Steps the trial runs if never stopped; null when it is set by epochs (known once the data is loaded). */
  totalSteps: number | null;
}

export const TRAINING_KEY_PREFIX = 'training.';
/**
 * Space keys under the training config's names whose normalized spec field still has the old spec name
 * ("training.microBatchSize" varies TrainingParams.microBatch).
 */
export const NORMALIZED_TRAINING_FIELD: Record<string, keyof TrainingParams> = {
  microBatchSize: 'microBatch',
};

/** Number of points in a grid space (choice entries only). */
export function gridSize(space: Record<string, SpaceDistribution>): number {
  return Object.values(space).reduce(
    (n, d) => n * (d.type === 'choice' ? d.values.length : Number.POSITIVE_INFINITY),
    1,
  );
}

/** The i-th point of the grid (mixed radix, last key fastest). */
function gridPoint(space: Record<string, SpaceDistribution>, i: number): Record<string, unknown> {
  const keys = Object.keys(space);
  const point: Record<string, unknown> = {};
  let rest = i;
  for (let k = keys.length - 1; k >= 0; k--) {
    const key = keys[k]!;
    const d = space[key]!;
    if (d.type !== 'choice') throw new Error(`grid search needs a list of values for "${key}"`);
    point[key] = d.values[rest % d.values.length];
    rest = Math.floor(rest / d.values.length);
  }
  // Restore the space's key order (built back to front above).
  return Object.fromEntries(keys.map((k) => [k, point[k]]));
}

export function sample(d: SpaceDistribution, rng: SeededRandom): unknown {
  switch (d.type) {
    case 'choice':
      return d.values[Math.floor(rng.next() * d.values.length)];
    case 'uniform':
      return d.min + rng.next() * (d.max - d.min);
    case 'loguniform':
      return Math.exp(Math.log(d.min) + rng.next() * (Math.log(d.max) - Math.log(d.min)));
    case 'int':
      return rng.int(d.min, d.max);
  }
}

/** Lays a sampled point over the spec's fixed hyperparameters and training fields. */
export function applyPoint(
  spec: Pick<RunSpec, 'hyperparameters' | 'training'>,
  point: Record<string, unknown>,
): { hyperparameters: Record<string, unknown>; training: TrainingParams } {
  const hyperparameters = { ...spec.hyperparameters };
  const training = { ...spec.training } as TrainingParams & Record<string, unknown>;
  for (const [key, value] of Object.entries(point)) {
    if (key.startsWith(TRAINING_KEY_PREFIX)) {
      const field = key.slice(TRAINING_KEY_PREFIX.length);
      training[NORMALIZED_TRAINING_FIELD[field] ?? field] = value;
    } else hyperparameters[key] = value;
  }
  return { hyperparameters, training };
}

/** How many trials a spec runs: the grid's size or maxTrials, whichever is smaller. */
export function trialCountOf(spec: Pick<RunSpec, 'search'>): number {
  const { space, strategy, maxTrials } = spec.search;
  return strategy === 'grid' ? Math.min(gridSize(space), maxTrials) : maxTrials;
}

/** The points of trials 0, 1, 2, …: the grid in product order, or the seeded random stream. */
function* points(spec: Pick<RunSpec, 'search'>): Generator<Record<string, unknown>> {
  const { space, strategy } = spec.search;
  const n = trialCountOf(spec);
  if (strategy === 'grid') {
    for (let i = 0; i < n; i++) yield gridPoint(space, i);
    return;
  }
  const rng = new SeededRandom(spec.search.seed);
  for (let i = 0; i < n; i++) {
    const point: Record<string, unknown> = {};
    for (const [key, d] of Object.entries(space)) point[key] = sample(d, rng);
    yield point;
  }
}

/**
 * Trials `from` ≤ index < `to` of a spec (clamped to its trial count): a deterministic function of the
 * normalized spec and the index, so the trials a run has not created yet need no storage (agents create
 * them a window ahead: issue 16, request amplification). A random stream is replayed from its seed.
 */
export function trialPlans(
  spec: Pick<RunSpec, 'hyperparameters' | 'training' | 'search'>,
  from: number,
  to: number,
): TrialPlan[] {
  const out: TrialPlan[] = [];
  let index = 0;
  for (const params of points(spec)) {
    if (index >= to) break;
    if (index >= from) out.push(trialPlan(spec, index, params));
    index++;
  }
  return out;
}

/** The trials a spec runs, in index order. */
export function expandTrials(spec: RunSpec): TrialPlan[] {
  return trialPlans(spec, 0, trialCountOf(spec));
}

/**
 * The plan of trial `index` at the point `params`: what `expandTrials` returns for it. A worker rebuilds
 * a trial's plan with it from the run's spec and the point its job carries (flow.ts `TrialJobRef`).
 */
export function trialPlan(
  spec: Pick<RunSpec, 'hyperparameters' | 'training' | 'search'>,
  index: number,
  params: Record<string, unknown>,
): TrialPlan {
  const { hyperparameters, training } = applyPoint(spec, params);
  const totalSteps = spec.search.asha ? spec.search.asha.maxSteps : (training.steps ?? null);
  return { index, params, hyperparameters, training, totalSteps };
}

/**
 * A trial's point read back from its row: the space's keys picked from the row's hyperparameters (which
 * hold every sampled key, "training.*" ones under their space name: runs/index.ts trialHyperparameters).
 */
export function pointOf(
  spec: Pick<RunSpec, 'search'>,
  stored: Record<string, unknown>,
): Record<string, unknown> {
  return Object.fromEntries(Object.keys(spec.search.space).map((k) => [k, stored[k]]));
}

/** What a trial row shows as its hyperparameters: the method's, plus sampled "training.*" values. */
export function trialHyperparameters(
  t: Pick<TrialPlan, 'hyperparameters' | 'params'>,
): Record<string, unknown> {
  const training = Object.fromEntries(
    Object.entries(t.params).filter(([k]) => k.startsWith(TRAINING_KEY_PREFIX)),
  );
  return { ...t.hyperparameters, ...training };
}

/** The Trial rows of trials from ≤ index < to: what POST /runs and the agents (lazily) store for each. */
export function trialRows(
  spec: Pick<RunSpec, 'hyperparameters' | 'training' | 'search'>,
  from: number,
  to: number,
): Array<{ hyperparameters: Record<string, unknown>; totalSteps?: number }> {
  return trialPlans(spec, from, to).map((t) => ({
    hyperparameters: trialHyperparameters(t),
    ...(t.totalSteps !== null ? { totalSteps: t.totalSteps } : {}),
  }));
}
