// The outbox publisher: pushes committed outbox rows to Redis (a run's flow,
// a cancel key) and marks them published. It runs right after each commit
// (POST /runs, cancel), every `intervalMs` to retry what failed while Redis
// was away, and once at start-up to drain what a crashed process left behind.
// Publishing is idempotent (deterministic job ids, SET), so a row published
// twice after a crash between Redis and the Postgres commit does no harm.
import { type Db, OUTBOX_KINDS, OUTBOX_RETRY, type OutboxRow, type RetryPolicy } from '@mpo/db';
import { buildRunFlow, jobIds, pointOf, type RunSpec, setCancelKey, type TrialPoint } from '@mpo/queue';
import type { FlowJob } from 'bullmq';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { unavailableDependency } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    outbox: OutboxPublisher;
  }
}

/**
 * Outbox payloads; `prefix` scopes a row to the deployment that wrote it.
 * A run's flow row names the run only: its spec (on the Run row) and its
 * trials' points (on the Trial rows) are read back when it is published, so
 * the row stays small whatever the run's size. Older rows carry the plan
 * (`spec`, `trials`: also what POST /runs hands the fast path in memory) or
 * the BullMQ tree (`flow`); both are published as they are.
 */
export type FlowPayload = { prefix: string } & (
  | { runId: string }
  | { runId: string; spec: RunSpec; trials: TrialPoint[]; trialCount?: number }
  | { flow: FlowJob }
);

/** The BullMQ tree of a flow row. */
export async function flowOf(db: Db, p: FlowPayload): Promise<FlowJob> {
  if ('flow' in p) return p.flow;
  if ('spec' in p) return buildRunFlow(p.runId, p.spec, p.trials, p.trialCount);
  const run = await db.runs.get(p.runId);
  const spec = run.spec as unknown as RunSpec;
  const trials = run.trials.map((t) => ({
    trialId: t.id,
    plan: { index: t.index, params: pointOf(spec, t.hyperparameters as Record<string, unknown>) },
  }));
  // The trials created so far (the first ones); the agents add the rest under the sweep job.
  return buildRunFlow(p.runId, spec, trials, Math.max(run.trialCount, trials.length));
}
export interface CancelPayload {
  prefix: string;
  runId: string;
  requestedAt: string;
}

// Redis answers these while it cannot take writes for a while: retry, never a dead letter.
const REDIS_BUSY = /^(OOM|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY)\b/;

/** A publish error that retrying later cannot fix (not an outage): it counts toward the dead letter. */
export const permanentFailure = (err: Error): boolean =>
  unavailableDependency(err) === null && !REDIS_BUSY.test(err.message);

export class OutboxPublisher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failingSince: number | undefined;
  /** Called for every row published and every failure (metrics). */
  onPublished: (row: OutboxRow) => void = () => {};
  onFailed: (row: OutboxRow, err: Error) => void = () => {};

  constructor(
    private readonly app: FastifyInstance,
    private readonly log: FastifyBaseLogger,
    private readonly retry: RetryPolicy = OUTBOX_RETRY,
  ) {}

  /** Publishes one row to Redis. Replaceable in tests to simulate Redis failing mid-publish. */
  publishRow = async (row: OutboxRow): Promise<void> => {
    const { redis, flow, prefix } = this.app.queues;
    if (row.kind === OUTBOX_KINDS.flow) {
      await flow.add(await flowOf(this.app.db, row.payload as FlowPayload));
    } else if (row.kind === OUTBOX_KINDS.cancel) {
      const { runId, requestedAt } = row.payload as CancelPayload;
      await setCancelKey(redis, prefix, runId, new Date(requestedAt));
    } else {
      throw new Error(`unknown outbox kind "${row.kind}"`);
    }
  };

  /**
   * The fast path right after a commit: publishes rows the caller just wrote
   * (it has their payloads) and marks them published in one statement, with no
   * transaction held across the Redis call. A concurrent drain may publish the
   * same rows too; publishing is idempotent. On failure the rows stay pending
   * for the periodic drain. True when published.
   */
  async publishCreated(rows: OutboxRow[]): Promise<boolean> {
    try {
      for (const row of rows) await this.publishRow(row);
    } catch (err) {
      const error = err as Error;
      for (const row of rows) this.onFailed(row, error);
      this.noteFailure(error, rows[0]);
      await this.app.db.outbox.markFailed(
        rows.map((r) => r.id),
        error.message,
        permanentFailure(error),
        this.retry,
      );
      return false;
    }
    await this.app.db.outbox.markPublished(rows.map((r) => r.id));
    this.report(rows, []);
    return true;
  }

  /** Publishes what is pending for one run now; true when nothing of it is left pending. */
  async publishRun(runId: string): Promise<boolean> {
    const { published, failed } = await this.app.db.outbox.drain({
      runId,
      prefix: this.app.queues.prefix,
      publish: (row) => this.publishRow(row),
      permanent: permanentFailure,
      retry: this.retry,
    });
    this.report(published, failed);
    return failed.length === 0;
  }

  /** Drains every pending row (batch by batch); never throws. */
  drainAll(): Promise<void> {
    this.running ??= (async () => {
      try {
        for (;;) {
          const { published, failed } = await this.app.db.outbox.drain({
            limit: 50,
            prefix: this.app.queues.prefix,
            publish: (row) => this.publishRow(row),
            permanent: permanentFailure,
            retry: this.retry,
          });
          this.report(published, failed);
          if (failed.length > 0 || published.length === 0) break;
        }
      } catch (err) {
        this.noteFailure(err as Error);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.drainAll(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private report(published: OutboxRow[], failed: Array<{ row: OutboxRow; error: Error }>) {
    for (const row of published) {
      this.log.info(
        {
          runId: row.runId,
          outboxId: String(row.id),
          kind: row.kind,
          jobId: row.kind === 'flow' ? jobIds.run(row.runId) : undefined,
        },
        'outbox row published',
      );
      this.onPublished(row);
    }
    for (const { row, error } of failed) {
      this.onFailed(row, error);
      this.noteFailure(error, row);
    }
    if (published.length && this.failingSince) {
      this.log.info({ downForMs: Date.now() - this.failingSince }, 'outbox publishing recovered');
      this.failingSince = undefined;
    }
  }

  /** Logs the first failure of an outage at warn, the rest at debug (one line per second otherwise). */
  private noteFailure(err: Error, row?: OutboxRow) {
    const bindings = { err: err.message, runId: row?.runId, outboxId: row ? String(row.id) : undefined };
    if (this.failingSince === undefined) {
      this.failingSince = Date.now();
      this.log.warn(bindings, 'outbox publishing failed; will retry');
    } else this.log.debug(bindings, 'outbox publishing still failing');
  }
}

export default fp<{ intervalMs: number; retry?: RetryPolicy }>(
  async (app, opts) => {
    const publisher = new OutboxPublisher(app, app.log.child({ component: 'outbox' }), opts.retry);
    app.decorate('outbox', publisher);
    app.addHook('onReady', async () => {
      // Leftovers from a previous process (crashed after commit, before publishing).
      await publisher.drainAll();
      publisher.start(opts.intervalMs);
    });
    app.addHook('onClose', async () => publisher.stop());
  },
  { name: 'outbox', dependencies: ['db', 'queues'] },
);
