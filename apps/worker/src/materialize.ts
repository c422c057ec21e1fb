// Lazily created trials (issue 16: request amplification). POST /runs stores a
// run with its first trial only; the rest of its plan is a function of the spec
// and the trial's index (@mpo/queue `trialPlans`), so nothing of it is stored
// until it is needed. An agent that starts one of a run's train jobs tops the
// run up to TRIAL_WINDOW created-but-unstarted trials; the run's sweep job,
// before it finalizes, creates what is left (the next window, waiting for it;
// or, for a cancelled run, every trial left as CANCELLED), so a run never ends
// with uncreated trials. Rows are created under a row lock on the run
// (db.runs.materialize), jobs get ids from the trial ids (a second publish is a
// no-op), and a trial whose jobs were not confirmed stays PENDING: the sweep
// job publishes it again.
import type { Db, NewTrial } from '@mpo/db';
import {
  jobIds,
  pointOf,
  QUEUES,
  type RunSpec,
  TRIAL_WINDOW,
  type TrialPoint,
  trialFlow,
  trialRows,
} from '@mpo/queue';
import type { FlowProducer } from 'bullmq';
import type { RunSpecs } from './run-specs.js';

export interface MaterializeContext {
  db: Db;
  specs: RunSpecs;
  flow: FlowProducer;
  prefix: string;
}

/** Stored trial rows as the flow builds their jobs: id, index and the sampled point read back from the row. */
function pointsOf(
  spec: RunSpec,
  trials: readonly { id: string; index: number; hyperparameters: unknown }[],
): TrialPoint[] {
  return trials.map((t) => ({
    trialId: t.id,
    plan: { index: t.index, params: pointOf(spec, t.hyperparameters as Record<string, unknown>) },
  }));
}

/** Adds trials' eval ← train jobs under the run's existing sweep job, then marks them QUEUED. */
async function publish(m: MaterializeContext, runId: string, spec: RunSpec, trials: TrialPoint[]) {
  const parent = { id: jobIds.run(runId), queue: `${m.prefix}:${QUEUES.sweep}` };
  for (const t of trials) await m.flow.add(trialFlow(runId, spec, t, parent));
  await m.db.runs.markQueued(trials.map((t) => t.trialId));
}

/**
 * Creates the run's next trials (up to `window` unstarted ones; 'all': every trial left) and publishes
 * their jobs. `starting`: a trial whose train job is starting now, no longer counted as unstarted.
 * Returns how many trials now have jobs (CANCELLED ones have none).
 */
export async function topUp(
  m: MaterializeContext,
  runId: string,
  opts: { window?: number | 'all'; starting?: string } = {},
): Promise<number> {
  const spec = await m.specs.get(runId);
  const r = await m.db.runs.materialize(
    runId,
    opts.window ?? TRIAL_WINDOW,
    (from, to) => trialRows(spec, from, to) as NewTrial[],
    opts.starting,
  );
  if (r.cancelled || r.trials.length === 0) return 0;
  const points = pointsOf(spec, r.trials);
  await publish(m, runId, spec, points);
  return points.length;
}

/**
 * Publishes again the jobs of the run's PENDING trials (created, jobs never confirmed: an agent stopped
 * between the commit and Redis). Called by the sweep job, which runs only when every job it knows of is
 * done, so a PENDING trial then has no live job. Returns how many.
 */
export async function republishPending(m: MaterializeContext, runId: string): Promise<number> {
  const run = await m.db.runs.get(runId);
  if (run.cancelRequestedAt) return 0;
  const spec = run.spec as unknown as RunSpec;
  const pending = pointsOf(
    spec,
    run.trials.filter((t) => t.status === 'PENDING'),
  );
  if (pending.length > 0) await publish(m, runId, spec, pending);
  return pending.length;
}
