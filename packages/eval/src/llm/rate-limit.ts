// Requests per second and concurrent requests, enforced together: a request first waits for a free slot, then
// for its start time, and starts are spaced at least 1/rps apart. Retries go through it too, so a burst of
// retries cannot exceed what the endpoint allows.

export interface RateLimitOptions {
  requestsPerSecond: number;
  maxConcurrency: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RateLimiter {
  private readonly interval: number;
  private readonly max: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  private nextStart = 0;

  constructor(opts: RateLimitOptions) {
    if (!(opts.requestsPerSecond > 0)) throw new RangeError('requestsPerSecond must be > 0');
    if (!Number.isInteger(opts.maxConcurrency) || opts.maxConcurrency < 1) {
      throw new RangeError('maxConcurrency must be an integer >= 1');
    }
    this.interval = 1000 / opts.requestsPerSecond;
    this.max = opts.maxConcurrency;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? sleep;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiters.push(r));
    this.active++;
    try {
      // Reserve the start slot synchronously so concurrent callers get distinct, increasing slots.
      const t = this.now();
      const start = Math.max(t, this.nextStart);
      this.nextStart = start + this.interval;
      if (start > t) await this.sleep(start - t);
      return await fn();
    } finally {
      this.active--;
      this.waiters.shift()?.();
    }
  }
}
