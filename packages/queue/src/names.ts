// Queue names, job names, job ids and our own Redis keys. Every key lives under
// the deployment's prefix (MPO_QUEUE_PREFIX, default "mpo"), which is also the
// BullMQ `prefix` option, so deployments sharing one Redis never meet.
import type { Device } from './spec.js';

export const DEFAULT_QUEUE_PREFIX = 'mpo';

/**
 * Queues. The run-level parent job of a flow lives on `sweep`; train and eval
 * jobs go to one queue per device kind, so an agent listens only to queues it
 * has slots for and never fetches a job that cannot run on its hardware.
 */
export const QUEUES = {
  sweep: 'sweep',
  train: { cpu: 'train-cpu', gpu: 'train-gpu' },
  eval: { cpu: 'eval-cpu', gpu: 'eval-gpu' },
} as const;

export type QueueName = typeof QUEUES.sweep | (typeof QUEUES.train)[Device] | (typeof QUEUES.eval)[Device];

export const ALL_QUEUES: readonly QueueName[] = [
  QUEUES.sweep,
  QUEUES.train.cpu,
  QUEUES.train.gpu,
  QUEUES.eval.cpu,
  QUEUES.eval.gpu,
];

export const trainQueue = (device: Device) => QUEUES.train[device];
export const evalQueue = (device: Device) => QUEUES.eval[device];

/** Job names (BullMQ's `job.name`), one per processor. */
export const JOB_NAMES = { run: 'run', train: 'train', eval: 'eval' } as const;
export type JobName = (typeof JOB_NAMES)[keyof typeof JOB_NAMES];

/**
 * Deterministic job ids: publishing a run's flow twice (the outbox retrying
 * after a crash between the Redis write and the Postgres commit) adds nothing
 * the second time. BullMQ forbids ":" in custom ids.
 */
export const jobIds = {
  run: (runId: string) => `run-${runId}`,
  train: (trialId: string) => `train-${trialId}`,
  eval: (trialId: string) => `eval-${trialId}`,
};

/**
 * Our own keys beside BullMQ's (`<prefix>:<queue>:...`); none of these names is
 * a queue name, so they cannot collide.
 *
 * - `cancel(runId)`: string (ISO time of the request), set when a run is
 *   cancelled, TTL CANCEL_TTL_SECONDS. Workers check it before starting a job
 *   and after every training step (`isCancelled`).
 * - `agent(id)`: hash written by each worker agent every heartbeat, TTL
 *   AGENT_TTL_SECONDS (see agents.ts for the fields).
 * - `agents`: sorted set agentId → last heartbeat (ms), the index of the above.
 * - `ashaRung(runId, rung)`: hash trialId → "<order>|<value>" of ASHA rung
 *   results, plus the arrival counter field `__order` (see rungs.ts).
 */
export function redisKeys(prefix: string = DEFAULT_QUEUE_PREFIX) {
  return {
    cancel: (runId: string) => `${prefix}:cancel:${runId}`,
    agent: (agentId: string) => `${prefix}:agents:${agentId}`,
    agents: `${prefix}:agents`,
    ashaRung: (runId: string, rung: number) => `${prefix}:asha:${runId}:${rung}`,
  };
}
