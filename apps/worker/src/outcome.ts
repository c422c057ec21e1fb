// How a job run ends, as the agent applies it to BullMQ. Processors return
// one of these rather than throwing, so that "give the job back" (shutdown),
// "not now" (trial folder busy, slots short) and "someone else owns it now"
// (lock lost) are never mistaken for failures.

import { isPermanentDbError } from '@mpo/db';
import { ProblemsError } from '@mpo/queue';
import type { Job } from 'bullmq';
import { JobConfigError } from './trainer-config.js';

export type Outcome =
  /** Done (succeeded, stopped, cancelled, evaluated, skipped): moveToCompleted. */
  | { kind: 'complete'; result: unknown }
  /** The agent is shutting down: back to the front of the wait list, no attempt used. */
  | { kind: 'release'; reason: string }
  /** Cannot run here right now: delayed for `ms`, no attempt used. */
  | { kind: 'delay'; ms: number; reason: string }
  /** The job's lock was lost and another agent may own it: touch nothing. */
  | { kind: 'abandon'; reason: string }
  /** Failed: BullMQ retries it with backoff unless `unrecoverable` (or attempts are used up). */
  | { kind: 'fail'; error: Error; unrecoverable: boolean };

/**
 * Errors no retry can fix: a payload or config that does not validate, a trial that does not exist, a
 * write Postgres refuses for good (a deleted trial's row, a value it rejects; not an outage).
 */
export function isUnrecoverable(err: unknown): boolean {
  return err instanceof ProblemsError || err instanceof JobConfigError || isPermanentDbError(err);
}

/** Whether BullMQ will try the job again after this failure. */
export function willRetry(job: Pick<Job, 'attemptsMade' | 'opts'>, unrecoverable: boolean): boolean {
  return !unrecoverable && job.attemptsMade + 1 < (job.opts.attempts ?? 1);
}
