// Redis settings from BullMQ's production guide, in one place for the API and
// the worker: https://docs.bullmq.io/guide/going-to-production
import { MetricsTime, type WorkerOptions } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Reconnect with exponential backoff, at least 1 s and at most 20 s apart (the guide's recommendation). */
export const retryStrategy = (times: number) => Math.max(Math.min(Math.exp(times), 20_000), 1_000);

/**
 * Connections that issue commands on behalf of a request (the API's queues,
 * flow producer, cancel keys): fail fast while Redis is away, so the API can
 * answer 503 instead of hanging, and reconnect in the background. A Redis
 * that is connected but does not answer (paused, swapping, a long DEBUG
 * SLEEP) is caught by the command timeout: without it a request waited for
 * the whole pause.
 */
export const PRODUCER_REDIS_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  commandTimeout: 3_000,
  retryStrategy,
};

/**
 * Worker connections block on Redis and must retry forever
 * (`maxRetriesPerRequest: null` is required by BullMQ Workers).
 */
export const WORKER_REDIS_OPTIONS: RedisOptions = {
  maxRetriesPerRequest: null,
  enableOfflineQueue: true,
  retryStrategy,
};

/**
 * Worker settings the API's /queues view relies on: `metrics` makes BullMQ
 * record completed/failed counts per minute (throughput), and a generous
 * stalled-job policy lets a trial whose agent was SIGKILLed come back to the
 * queue (after its lock expires) instead of failing.
 */
export const WORKER_DEFAULTS: Pick<
  WorkerOptions,
  'metrics' | 'lockDuration' | 'stalledInterval' | 'maxStalledCount'
> = {
  metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
  lockDuration: 60_000,
  stalledInterval: 30_000,
  maxStalledCount: 5,
};

export class RedisPolicyError extends Error {
  constructor(
    readonly url: string,
    readonly policy: string,
  ) {
    super(
      `Redis at ${url} has maxmemory-policy "${policy}", but BullMQ needs "noeviction": under memory pressure ` +
        'any other policy silently deletes queue keys (lost jobs, broken flows). Fix it with ' +
        '`redis-cli CONFIG SET maxmemory-policy noeviction` and put `maxmemory-policy noeviction` in redis.conf.',
    );
    this.name = 'RedisPolicyError';
  }
}

/** The server's maxmemory-policy (CONFIG GET, or INFO where CONFIG is disabled, as on managed Redis). */
export async function maxmemoryPolicy(redis: Redis): Promise<string> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    if (reply[1]) return reply[1];
  } catch {
    // CONFIG may be renamed or forbidden; INFO carries the same field.
  }
  const info = await redis.info('memory');
  const m = /^maxmemory_policy:(\S+)/m.exec(info);
  if (!m?.[1])
    throw new Error('cannot read maxmemory-policy from Redis (CONFIG GET and INFO memory both failed)');
  return m[1];
}

/** Throws RedisPolicyError unless the server's maxmemory-policy is noeviction. Call at start-up. */
export async function assertNoEviction(redis: Redis, url = DEFAULT_REDIS_URL): Promise<void> {
  const policy = await maxmemoryPolicy(redis);
  if (policy !== 'noeviction') throw new RedisPolicyError(redactUrl(url), policy);
}

/** A Redis URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable Redis URL)';
  }
}
