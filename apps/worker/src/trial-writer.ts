// Buffers what a running trial sends to Postgres (metric rows, checkpoints,
// its current step and best metric) and writes it in batches: when
// `flushRows` rows are waiting or `flushMs` after the oldest arrived. When a
// write fails (Postgres unreachable) everything stays buffered and is retried
// with backoff; rows are keyed by (name, step, language), and the repository
// skips rows it already holds, so a retried or replayed batch never
// duplicates a step and nothing is dropped.
//
// The buffer is bounded: at `maxRows` rows (buffered + in flight) `full` is
// true and the caller stops reading the trainer's protocol file, which is
// the backlog during a long outage (on disk, not in memory). A write that
// fails for good (isPermanentDbError: a deleted trial, a refused value) is not
// retried: the writer stops and reports it through `onFatal`.

import { setTimeout as sleep } from 'node:timers/promises';
import { type Db, isPermanentDbError } from '@mpo/db';
import type { MetricRow } from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import type { Logger } from './log.js';
import { backoffMs, withTimeout } from './retry.js';

export interface CheckpointRecord {
  step: number;
  path: string;
  bytes: number;
  sha256: string;
}

export interface TrialProgressRecord {
  currentStep?: number;
  totalSteps?: number;
  bestMetric?: number | null;
}

export interface TrialWriterOptions {
  flushRows: number;
  flushMs: number;
  maxBackoffMs: number;
  log: Logger;
  /** A write that has not answered after this long counts as failed (default 30 s). */
  timeoutMs?: number;
  /** Rows held in memory (buffered + in flight) at which `full` turns true (default 10,000). */
  maxRows?: number;
  /** Called once when a write failed for good; the writer has stopped. */
  onFatal?: (err: Error) => void;
}

/** Two full metric batches (packages/db DEFAULT_METRIC_BATCH, 5,000 rows): a few MB of rows at most. */
export const DEFAULT_MAX_BUFFERED_ROWS = 10_000;

type Row = MetricRow & { time: Date };

const keyOf = (r: MetricRow) => `${r.name}\u0000${r.step}\u0000${r.language ?? ''}`;

export class TrialWriter {
  private rows = new Map<string, Row>();
  private checkpoints = new Map<number, CheckpointRecord>();
  private progress: TrialProgressRecord | null = null;
  private firstPendingAt: number | null = null;
  private wake: (() => void) | null = null;
  private closing = false;
  private abandon: AbortSignal | undefined;
  private readonly pump: Promise<void>;
  /** Rows of the write in progress (they are back in `rows` if it fails). */
  private inFlight = 0;
  /** Rows Postgres accepted (new ones; re-sent duplicates are not counted). */
  inserted = 0;
  failures = 0;
  /** The most rows ever held at once (buffered + in flight): what the bound is measured by. */
  peakRows = 0;
  /** The error that stopped the writer for good, if any. */
  fatal: Error | null = null;

  constructor(
    private readonly db: Pick<Db, 'metrics' | 'artifacts' | 'runs'>,
    readonly trialId: string,
    private readonly opts: TrialWriterOptions,
  ) {
    this.pump = this.run();
  }

  addRows(rows: readonly MetricRow[], time = new Date()): void {
    if (this.fatal) return; // nothing more reaches Postgres; the protocol file keeps them
    for (const r of rows) this.rows.set(keyOf(r), { ...r, time });
    this.peakRows = Math.max(this.peakRows, this.rows.size + this.inFlight);
    this.touched();
  }

  /** At the bound: read no more trainer output until a write made room (never true once stopped for good). */
  get full(): boolean {
    return !this.fatal && this.rows.size + this.inFlight >= (this.opts.maxRows ?? DEFAULT_MAX_BUFFERED_ROWS);
  }

  /** Resolves once `full` is false (polled: writes take milliseconds to seconds), or when `signal` aborts. */
  async room(signal?: AbortSignal): Promise<void> {
    while (this.full && !signal?.aborted) await sleep(50);
  }

  addCheckpoint(c: CheckpointRecord): void {
    this.checkpoints.set(c.step, c);
    this.touched();
  }

  setProgress(p: TrialProgressRecord): void {
    this.progress = { ...this.progress, ...p };
    this.touched();
  }

  /** Rows, checkpoints and progress updates not yet written. */
  get pending(): number {
    return this.rows.size + this.checkpoints.size + (this.progress ? 1 : 0);
  }

  get pendingRows(): number {
    return this.rows.size;
  }

  /**
   * Writes everything still buffered, retrying until it lands, then stops.
   * With `abandon` aborted (the job was lost to another agent) it stops
   * retrying and returns what was left unwritten.
   */
  async close(abandon?: AbortSignal): Promise<{ unwritten: number }> {
    this.closing = true;
    this.abandon = abandon;
    abandon?.addEventListener('abort', () => this.wake?.(), { once: true });
    this.wake?.();
    await this.pump;
    return { unwritten: this.pending };
  }

  private touched(): void {
    // The first pending item starts the flushMs clock: wake the pump so it starts counting.
    const first = this.firstPendingAt === null;
    this.firstPendingAt ??= Date.now();
    if (first || this.rows.size >= this.opts.flushRows) this.wake?.();
  }

  /** Resolves after `ms`, or earlier when woken (new rows, close). */
  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  private async run(): Promise<void> {
    for (;;) {
      // Wait until a batch is due.
      for (;;) {
        if (this.closing || this.rows.size >= this.opts.flushRows) break;
        if (this.firstPendingAt === null) await this.nap(Number.POSITIVE_INFINITY);
        else {
          const due = this.firstPendingAt + this.opts.flushMs - Date.now();
          if (due <= 0) break;
          await this.nap(due);
        }
      }
      if (this.abandon?.aborted) return;
      if (this.pending === 0) {
        if (this.closing) return;
        this.firstPendingAt = null;
        continue;
      }
      try {
        await this.writeOnce();
        this.failures = 0;
      } catch (err) {
        if (isPermanentDbError(err)) {
          this.fatal = err as Error;
          this.opts.log.error(
            { err: errorMessage(err), unwritten: this.pending },
            'writing metrics to Postgres failed for good; not retrying',
          );
          this.opts.onFatal?.(this.fatal);
          return;
        }
        this.failures += 1;
        const delay = backoffMs(this.failures, 250, this.opts.maxBackoffMs);
        this.opts.log.warn(
          {
            err: errorMessage(err),
            buffered: this.rows.size,
            attempt: this.failures,
            retryInMs: delay,
            // What an outage costs in memory (the bound keeps it flat): logged per failed write.
            heapUsedMb: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
          },
          'writing metrics to Postgres failed; keeping them buffered',
        );
        await sleep(delay, undefined, this.abandon ? { signal: this.abandon } : {}).catch(() => {});
      }
    }
  }

  private async writeOnce(): Promise<void> {
    const rows = [...this.rows.values()];
    const checkpoints = [...this.checkpoints.values()];
    const progress = this.progress;
    this.rows = new Map();
    this.checkpoints = new Map();
    this.progress = null;
    this.firstPendingAt = null;
    this.inFlight = rows.length;
    const timeout = this.opts.timeoutMs ?? 30_000;
    try {
      if (rows.length) {
        const n = await withTimeout(
          this.db.metrics.append(rows.map((r) => ({ trialId: this.trialId, ...r }))),
          timeout,
          'metrics.append',
        );
        this.inserted += n;
      }
      for (const c of checkpoints) {
        await withTimeout(
          this.db.artifacts.recordCheckpoint({ trialId: this.trialId, ...c }),
          timeout,
          'recordCheckpoint',
        );
      }
      if (progress)
        await withTimeout(this.db.runs.updateTrial(this.trialId, progress), timeout, 'updateTrial');
    } catch (err) {
      // Put everything back (a newer value for the same key wins). Part of it
      // may have landed; writing it again is harmless.
      for (const r of rows) {
        const k = keyOf(r);
        if (!this.rows.has(k)) this.rows.set(k, r);
      }
      for (const c of checkpoints) if (!this.checkpoints.has(c.step)) this.checkpoints.set(c.step, c);
      if (progress) this.progress = { ...progress, ...(this.progress as TrialProgressRecord | null) };
      this.firstPendingAt ??= Date.now();
      throw err;
    } finally {
      this.inFlight = 0;
    }
  }
}
