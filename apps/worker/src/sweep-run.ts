// The run-level parent of a flow (queue `sweep`) runs once every trial's eval
// job has finished or failed: it sets the run's final status from its trials
// and returns a summary (trial counts, the best trial by the sweep's metric).
// It needs no device slot, so it is an ordinary BullMQ processor.
import type { Db, RunStatus } from '@mpo/db';
import { isTrialWithResult, parseSweepJobData } from '@mpo/queue';
import type { Job } from 'bullmq';
import type { Logger } from './log.js';

export interface SweepSummary {
  runId: string;
  status: RunStatus;
  trials: Record<string, number>;
  best: { trialId: string; index: number; metric: number } | null;
}

export async function finalizeRun(db: Db, job: Pick<Job, 'data'>, log: Logger): Promise<SweepSummary> {
  const d = parseSweepJobData(job.data);
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
