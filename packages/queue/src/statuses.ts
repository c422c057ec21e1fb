// Every list of states the system shares, defined once: the statuses of runs
// and trials (the Prisma enums RunStatus and TrialStatus hold the same values,
// checked by packages/db's tests), the subsets the API, the worker, the CLI and
// the dashboard branch on, and BullMQ's job states. This file imports nothing,
// so the browser dashboard and packages/db take it alone through the
// `@mpo/queue/statuses` entry point without loading BullMQ.

/** A run's statuses, in the order a run goes through them. */
export const RUN_STATUSES = ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** A run in one of these is over: its finishedAt is set and it cannot be cancelled any more. */
export const RUN_TERMINAL_STATUSES = [
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
] as const satisfies readonly RunStatus[];

/** A trial's statuses; STOPPED is ASHA's early stop at a rung. */
export const TRIAL_STATUSES = [
  'PENDING',
  'QUEUED',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
  'STOPPED',
  'CANCELLED',
] as const;
export type TrialStatus = (typeof TRIAL_STATUSES)[number];

/** A trial in one of these will not train again: its finishedAt is set. */
export const TRIAL_TERMINAL_STATUSES = [
  'SUCCEEDED',
  'FAILED',
  'STOPPED',
  'CANCELLED',
] as const satisfies readonly TrialStatus[];

/** Trials still to train or training: they hold a token's quota and count as the run's open work. */
export const TRIAL_ACTIVE_STATUSES = [
  'PENDING',
  'QUEUED',
  'RUNNING',
] as const satisfies readonly TrialStatus[];

/** Trials not started yet: cancelling a run cancels these at once (running ones stop at their next step). */
export const TRIAL_UNSTARTED_STATUSES = ['PENDING', 'QUEUED'] as const satisfies readonly TrialStatus[];

/** Trials that ended with a result: a finished sweep's best trial is one of these (ASHA's stop is a normal end). */
export const TRIAL_RESULT_STATUSES = ['SUCCEEDED', 'STOPPED'] as const satisfies readonly TrialStatus[];

/** Trials an eval job evaluates: only these end with their final weights (a stopped trial's are a rung's). */
export const TRIAL_EVALUATED_STATUSES = ['SUCCEEDED'] as const satisfies readonly TrialStatus[];

const has =
  <T extends string>(list: readonly T[]) =>
  (status: string): status is T =>
    (list as readonly string[]).includes(status);

export const isRunTerminal = has(RUN_TERMINAL_STATUSES);
export const isTrialTerminal = has(TRIAL_TERMINAL_STATUSES);
export const isTrialWithResult = has(TRIAL_RESULT_STATUSES);
export const isTrialEvaluated = has(TRIAL_EVALUATED_STATUSES);

/** Every BullMQ job state, in the order a job meets them and the API, metrics and dashboard show them. */
export const JOB_STATES = [
  'waiting',
  'prioritized',
  'delayed',
  'active',
  'waiting-children',
  'completed',
  'failed',
  'paused',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** The states of a job that is done, one way or the other (BullMQ keeps per-minute metrics for these two). */
export const FINISHED_JOB_STATES = ['completed', 'failed'] as const satisfies readonly JobState[];
export const isJobFinished = has(FINISHED_JOB_STATES);
