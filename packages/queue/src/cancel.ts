// Cancellation: the API marks the run in Postgres, then (through its outbox)
// sets `<prefix>:cancel:<runId>`. A worker checks the key before it starts a
// job and after every training step; when set, it finishes the step, writes a
// checkpoint, marks the trial CANCELLED and completes the job with status
// CANCELLED (not a failure: nothing is retried). One EXISTS per step is cheap.
import type { Redis } from 'ioredis';
import { redisKeys } from './names.js';

export const CANCEL_TTL_SECONDS = 30 * 24 * 3600;

export async function setCancelKey(
  redis: Redis,
  prefix: string,
  runId: string,
  at = new Date(),
): Promise<void> {
  await redis.set(redisKeys(prefix).cancel(runId), at.toISOString(), 'EX', CANCEL_TTL_SECONDS);
}

export async function isCancelled(redis: Redis, prefix: string, runId: string): Promise<boolean> {
  return (await redis.exists(redisKeys(prefix).cancel(runId))) === 1;
}
