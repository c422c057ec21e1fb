// Retrying writes to Postgres: a trial must survive the database going away
// for a while, so the writes a job cannot finish without (trial status, the
// last metrics) are retried with capped exponential backoff until they land,
// or until the caller gives up through its AbortSignal.

import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '@mpo/util';
import type { Logger } from './log.js';

export interface RetryOptions {
  what: string;
  log: Logger;
  /** First delay (ms); doubles per failure up to maxMs. */
  minMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
}

export class AbortedError extends Error {
  constructor(what: string) {
    super(`${what}: aborted`);
    this.name = 'AbortedError';
  }
}

/** Backoff delay before retry `attempt` (1-based), with ±20% jitter so agents do not retry in lockstep. */
export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  const base = Math.min(maxMs, minMs * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** Runs `fn` until it resolves; errors matching `fatal` are thrown at once. */
export async function retrying<T>(
  fn: () => Promise<T>,
  opts: RetryOptions & { fatal?: (err: unknown) => boolean },
): Promise<T> {
  const min = opts.minMs ?? 250;
  const max = opts.maxMs ?? 10_000;
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw new AbortedError(opts.what);
    try {
      return await fn();
    } catch (err) {
      if (opts.fatal?.(err)) throw err;
      const delay = backoffMs(attempt, min, max);
      opts.log.warn({ err: errorMessage(err), attempt, retryInMs: delay }, `${opts.what} failed; retrying`);
      try {
        await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : {});
      } catch {
        throw new AbortedError(opts.what);
      }
    }
  }
}

/** Rejects with a timeout error when `p` has not settled within `ms` (a hung socket must not stall a trial). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
