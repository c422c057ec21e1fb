// The run-level parent of a flow (queue `sweep`) runs once every trial's eval
// job has finished or failed: it sets the run's final status from its trials
// and returns a summary (trial counts, the best trial by the sweep's metric).
// It needs no device slot, so it is an ordinary BullMQ processor. Trials are
// created lazily (materialize.ts): before it finalizes, it creates those left,
// and waits for them as its children when they have jobs.
import type { Db, RunStatus } from '@mpo/db';
import { isTrialWithResult, parseSweepJobData } from '@mpo/queue';
import { type Job, WaitingChildrenError } from 'bullmq';
import type { Logger } from './log.js';
import { type MaterializeContext, republishPending, topUp } from './materialize.js';

export interface SweepSummary {
  runId: string;
  status: RunStatus;
  trials: Record<string, number>;
  best: { trialId: string; index: number; metric: number } | null;
}

/**
 * Creates the run's trials not created yet (the next window, or all of them CANCELLED for a cancelled
 * run) and publishes again those whose jobs were never confirmed; while any of them has jobs, the sweep
 * job goes back to waiting for its children (BullMQ's step-job pattern: `WaitingChildrenError`).
 */
async function createLeftovers(m: MaterializeContext, job: Job, token: string, log: Logger): Promise<void> {
  const runId = parseSweepJobData(job.data).runId;
  let live = await republishPending(m, runId);
  for (;;) {
    live += await topUp(m, runId);
    if (live === 0) return;
    log.info({ trials: live }, 'trials left to run; waiting for them');
    // False when they all finished already (moved before this call): create the next ones.
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
    live = 0;
  }
}

export async function finalizeRun(
  db: Db,
  job: Job,
  log: Logger,
  lazy?: { m: MaterializeContext; token: string | undefined },
): Promise<SweepSummary> {
  const d = parseSweepJobData(job.data);
  if (lazy?.token) await createLeftovers(lazy.m, job, lazy.token, log);
  const run = await db.runs.get(d.runId);
  const counts: Record<string, number> = {};
  for (const t of run.trials) counts[t.status] = (counts[t.status] ?? 0) + 1;
  const finished = run.trials.filter((t) => isTrialWithResult(t.status)).length;
  // Cancelled runs stay cancelled; otherwise a sweep succeeded if any trial produced a result.
  const status: RunStatus = run.cancelRequestedAt ? 'CANCELLED' : finished > 0 ? 'SUCCEEDED' : 'FAILED';
  let best: SweepSummary['best'] = null;
  for (const t of run.trials) {
    if (t.bestMetric === null || !isTrialWithResult(t.status)) continue;
    const better =
      d.objective.mode === 'max'
        ? t.bestMetric > (best?.metric ?? -Infinity)
        : t.bestMetric < (best?.metric ?? Infinity);
    if (better) best = { trialId: t.id, index: t.index, metric: t.bestMetric };
  }
  if (run.status !== status) await db.runs.setStatus(d.runId, status);
  log.info({ status, trials: counts, best }, 'run finished');
  return { runId: d.runId, status, trials: counts, best };
}
