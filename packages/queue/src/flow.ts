// A run as a BullMQ flow: the run-level parent (queue `sweep`) ← one eval job
// per trial ← that trial's train job. A parent starts only when its children
// are done, so a trial is evaluated after it trained and the run is finalized
// after every trial was evaluated. The flow is published with the run's first
// trial; agents add the others under the sweep job as they create them, and
// the sweep job creates any left before it finalizes (worker materialize.ts). Building the tree is pure (the API stores
// the run in Postgres and publishes the tree after commit). Train and eval
// jobs carry only their trial's own fields (`TrialJobRef`); the worker reads
// the run's spec once and rebuilds the rest (`trainJobFromRef`).
import type { FlowJob, JobsOptions } from 'bullmq';
import { runRungs } from './asha.js';
import {
  CONTRACT_VERSION,
  type EvalJobData,
  type SweepJobData,
  TRIAL_REF_VERSION,
  type TrainJobData,
  type TrialJobRef,
} from './jobs.js';
import { evalQueue, JOB_NAMES, jobIds, QUEUES, trainQueue } from './names.js';
import type { RunSpec } from './spec.js';
import { type TrialPlan, trialPlan } from './sweep.js';

const DAY_S = 24 * 3600;

/**
 * Train jobs: retried with backoff (a crashed agent's job comes back through
 * BullMQ's stalled-job check and resumes from its checkpoint); a trial that
 * fails for good fails its eval job (failParentOnFailure), never silently
 * evaluating nothing. Finished jobs are kept for a while so that re-publishing
 * a flow with the same ids stays a no-op.
 */
export const TRAIN_JOB_OPTIONS: JobsOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 10_000 },
  failParentOnFailure: true,
  removeOnComplete: { age: 14 * DAY_S },
  removeOnFail: { age: 30 * DAY_S },
};

/** Eval jobs: a failed eval (or a failed trial below it) must not block the run's parent. */
export const EVAL_JOB_OPTIONS: JobsOptions = {
  attempts: 2,
  backoff: { type: 'exponential', delay: 10_000 },
  ignoreDependencyOnFailure: true,
  removeOnComplete: { age: 14 * DAY_S },
  removeOnFail: { age: 30 * DAY_S },
};

export const SWEEP_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 5_000 },
  removeOnComplete: { age: 30 * DAY_S },
  removeOnFail: { age: 30 * DAY_S },
};

export interface PlannedTrial {
  trialId: string;
  plan: TrialPlan;
}

/** The train job payload of one trial. */
export function trainJobData(runId: string, spec: RunSpec, t: PlannedTrial): TrainJobData {
  const { asha } = spec.search;
  return {
    v: CONTRACT_VERSION,
    runId,
    trialId: t.trialId,
    trialIndex: t.plan.index,
    method: spec.method,
    hyperparameters: t.plan.hyperparameters,
    params: t.plan.params,
    model: spec.model,
    data: spec.data,
    dominantLanguage: spec.dominantLanguage,
    targetLanguages: spec.targetLanguages,
    training: t.plan.training,
    totalSteps: t.plan.totalSteps,
    slots: {
      device: spec.resources.device,
      count: spec.resources.ranksPerTrial,
      ...(spec.resources.ranksPerHost !== undefined ? { ranksPerHost: spec.resources.ranksPerHost } : {}),
    },
    objective: { metric: spec.search.metric, mode: spec.search.mode },
    ...(asha
      ? {
          asha: {
            rungs: runRungs(spec.search),
            maxSteps: asha.maxSteps,
            reductionFactor: asha.reductionFactor,
            metric: spec.search.metric,
            mode: spec.search.mode,
          },
        }
      : {}),
  };
}

/** The eval job payload of one trial (one slot of the run's device). */
export function evalJobData(runId: string, spec: RunSpec, t: PlannedTrial): EvalJobData {
  return {
    v: CONTRACT_VERSION,
    runId,
    trialId: t.trialId,
    trialIndex: t.plan.index,
    model: spec.model,
    data: spec.data,
    dominantLanguage: spec.dominantLanguage,
    targetLanguages: spec.targetLanguages,
    benchmarks: spec.eval.benchmarks,
    languages: spec.eval.languages,
    maxPrompts: spec.eval.maxPrompts,
    judge: spec.eval.judge,
    cutoff: t.plan.training.cutoff,
    slots: { device: spec.resources.device, count: 1 },
  };
}

/** What a trial's jobs need of it: its id, index and point. */
export interface TrialPoint {
  trialId: string;
  plan: Pick<TrialPlan, 'index' | 'params'>;
}

/** The payload of a trial's train job (`eval: false`) or eval job (one slot of the run's device). */
export function trialJobRef(runId: string, spec: RunSpec, t: TrialPoint, eval_ = false): TrialJobRef {
  const { device, ranksPerTrial, ranksPerHost } = spec.resources;
  return {
    v: TRIAL_REF_VERSION,
    runId,
    trialId: t.trialId,
    trialIndex: t.plan.index,
    params: t.plan.params,
    slots: eval_
      ? { device, count: 1 }
      : { device, count: ranksPerTrial, ...(ranksPerHost !== undefined ? { ranksPerHost } : {}) },
  };
}

const plannedOf = (spec: RunSpec, ref: TrialJobRef): PlannedTrial => ({
  trialId: ref.trialId,
  plan: trialPlan(spec, ref.trialIndex, ref.params),
});

/**
 * The full train payload of a trial job, rebuilt from the run's spec (what the job carried before issue
 * 16). The job's `slots` win over the spec's: they are what the agent reserved.
 */
export function trainJobFromRef(spec: RunSpec, ref: TrialJobRef): TrainJobData {
  return { ...trainJobData(ref.runId, spec, plannedOf(spec, ref)), slots: ref.slots };
}

export function evalJobFromRef(spec: RunSpec, ref: TrialJobRef): EvalJobData {
  return { ...evalJobData(ref.runId, spec, plannedOf(spec, ref)), slots: ref.slots };
}

/**
 * Trials a run starts with: `POST /runs` stores the Run row and this many Trial rows and jobs; the agents
 * create the rest (`TRIAL_WINDOW`). One keeps what a request stores independent of its trial count
 * (issue 16: request amplification ≤ 20×).
 */
export const INITIAL_TRIALS = 1;

/**
 * Trials created but not started that a run keeps ahead of its agents: each time an agent starts one of
 * the run's train jobs it tops the run up to this many unstarted trials (worker `materialize.ts`), so
 * as many agents and slots as this can take a trial at once, and one more joins at each start. Redis
 * then holds a run's queued jobs for at most this many trials plus those running.
 */
export const TRIAL_WINDOW = 4;

/** A trial's eval job with its train job below it; `parent` hangs it under an existing sweep job. */
export function trialFlow(
  runId: string,
  spec: RunSpec,
  t: TrialPoint,
  parent?: { id: string; queue: string },
): FlowJob {
  const device = spec.resources.device;
  return {
    name: JOB_NAMES.eval,
    queueName: evalQueue(device),
    data: trialJobRef(runId, spec, t, true),
    opts: { ...EVAL_JOB_OPTIONS, jobId: jobIds.eval(t.trialId), ...(parent ? { parent } : {}) },
    children: [
      {
        name: JOB_NAMES.train,
        queueName: trainQueue(device),
        data: trialJobRef(runId, spec, t),
        opts: { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(t.trialId) },
      },
    ],
  };
}

/**
 * The run's sweep job with the trials created so far below it. `trialCount` is the run's planned total
 * (default: the trials given); the rest are added under the sweep job as they are created
 * (`trialFlow` with a parent).
 */
export function buildRunFlow(
  runId: string,
  spec: RunSpec,
  trials: readonly TrialPoint[],
  trialCount = trials.length,
): FlowJob {
  if (trials.length === 0) throw new Error('a run needs at least one trial');
  const data: SweepJobData = {
    v: CONTRACT_VERSION,
    runId,
    trialCount,
    strategy: spec.search.strategy,
    objective: { metric: spec.search.metric, mode: spec.search.mode },
  };
  return {
    name: JOB_NAMES.run,
    queueName: QUEUES.sweep,
    data,
    opts: { ...SWEEP_JOB_OPTIONS, jobId: jobIds.run(runId) },
    children: trials.map((t) => trialFlow(runId, spec, t)),
  };
}

/**
 * What one request may make the platform store. Every trial costs its Trial
 * row and two jobs whatever the request spent on it, so a small spec can
 * expand into many trials: `POST /runs` checks this budget before anything is
 * stored. The budget is 20× the request plus a per-trial allowance that a
 * trial's own share fits in (its two `TrialJobRef` jobs with their options
 * and its Trial row: about 700 B for a one-key point), never above `maxBytes`.
 * The run-level lists are stored once, on the Run row, and count against the
 * 20×. This bounds the whole tree over the run's life: POST /runs itself
 * stores the run and its first trial only (INITIAL_TRIALS, measured ≤ 20× the
 * request by amplification.test.ts), and the agents create the others a
 * window at a time (TRIAL_WINDOW) as trials start.
 */
export const JOB_TREE_BUDGET = {
  requestFactor: 20,
  perTrialBytes: 1024,
  maxBytes: 16 * 1024 * 1024,
} as const;

export interface JobTreeSize {
  /** Bytes the run's jobs (Redis) and its outbox plan (Postgres) would take, as JSON. */
  bytes: number;
  budget: number;
  /** Trials counted before the budget was exceeded (all of them when within it). */
  counted: number;
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/**
 * The stored size of a run's job tree, summed trial by trial with a stop once
 * the budget is exceeded (the tree of an oversized request is never built in
 * memory). Ids are placeholders of the real ids' length.
 */
export function jobTreeSize(spec: RunSpec, trials: readonly TrialPlan[], requestBytes: number): JobTreeSize {
  const b = JOB_TREE_BUDGET;
  const budget = Math.min(b.maxBytes, b.requestFactor * requestBytes + b.perTrialBytes * trials.length);
  const bytesOf = (v: unknown) => Buffer.byteLength(JSON.stringify(v));
  const jobOptions = bytesOf(TRAIN_JOB_OPTIONS) + bytesOf(EVAL_JOB_OPTIONS);
  // Once per run: the spec on the Run row, the sweep job, the outbox row ({prefix, runId}).
  let bytes =
    bytesOf(spec) +
    bytesOf(SWEEP_JOB_OPTIONS) +
    bytesOf({ runId: NIL_UUID, strategy: spec.search.strategy }) +
    bytesOf({ prefix: 'mpo', runId: NIL_UUID });
  let counted = 0;
  for (const plan of trials) {
    if (bytes > budget) break;
    const t = { trialId: NIL_UUID, plan };
    // Two jobs, and the Trial row: its ids and hyperparameters (the method's and the point's).
    bytes += bytesOf(trialJobRef(NIL_UUID, spec, t)) + bytesOf(trialJobRef(NIL_UUID, spec, t, true));
    bytes += jobOptions + 2 * NIL_UUID.length + bytesOf(plan.hyperparameters) + bytesOf(plan.params);
    counted++;
  }
  return { bytes, budget, counted };
}
