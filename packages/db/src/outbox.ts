// The transactional outbox's publishing side. Rows are written with the run in
// RunRepository.create (and requestCancel); a publisher in the API claims
// unpublished rows, pushes them to Redis, and marks them published in the same
// Postgres transaction that holds their row locks. A crash between the Redis
// write and the commit publishes the row again later, which is why every
// publication must be idempotent (deterministic job ids, SET of a key).
import type { PrismaClient } from './generated/prisma/client.js';

/** What an outbox row asks the publisher to do. */
export const OUTBOX_KINDS = {
  /** payload: {prefix, runId} (older rows: the plan {prefix, runId, spec, trials}, or {prefix, flow}); on publish the run's PENDING trials become QUEUED. */
  flow: 'flow',
  /** payload: {prefix, runId, requestedAt}; sets the run's cancel key in Redis. */
  cancel: 'cancel',
} as const;

/**
 * A row whose publishing fails permanently (the publisher says so: not an
 * outage, e.g. a payload Redis rejects) is retried with exponential backoff
 * (1 s, 2 s, … at most 5 min apart) and after this many attempts becomes a
 * dead letter: no longer retried, listed for an admin. A transient failure
 * (Redis away) backs off at most 30 s and never kills a row: an outage of any
 * length must not lose a run.
 */
export const OUTBOX_MAX_ATTEMPTS = 10;

export interface RetryPolicy {
  maxAttempts: number;
  /** Backoff of the first retry in seconds; it doubles with each attempt. */
  baseSeconds: number;
  permanentCapSeconds: number;
  transientCapSeconds: number;
}

export const OUTBOX_RETRY: RetryPolicy = {
  maxAttempts: OUTBOX_MAX_ATTEMPTS,
  baseSeconds: 1,
  permanentCapSeconds: 300,
  transientCapSeconds: 30,
};

export interface DeadLetter {
  id: bigint;
  runId: string;
  kind: string;
  attempts: number;
  lastError: string | null;
  createdAt: Date;
  deadAt: Date;
}

export interface OutboxRow {
  id: bigint;
  runId: string;
  kind: string;
  payload: unknown;
  attempts: number;
  createdAt: Date;
}

export interface DrainResult {
  published: OutboxRow[];
  failed: Array<{ row: OutboxRow; error: Error }>;
}

export class OutboxRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * Claims up to `limit` unpublished rows, oldest first (FOR UPDATE SKIP LOCKED:
   * several API replicas never hold the same row), calls `publish` on each in
   * order, and in the same transaction marks the successes published (and a
   * flow's PENDING trials QUEUED) and records the failures' error. After a
   * failure the run's later rows wait (a run's cancel never overtakes its
   * flow); other runs' rows go on, so one poison row cannot block the rest.
   * A failed row is not claimed again before its backoff ends, and dead
   * letters never again (see OUTBOX_MAX_ATTEMPTS).
   */
  async drain(opts: {
    limit?: number;
    /** Only this run's rows. */
    runId?: string;
    /**
     * Only rows whose payload names this queue prefix (`payload.prefix`): each
     * deployment publishes its own rows when several share one database.
     */
    prefix?: string;
    /** Only these kinds (default: every kind in OUTBOX_KINDS). */
    kinds?: string[];
    publish: (row: OutboxRow) => Promise<void>;
    /** Whether a publish error is permanent (counts toward the dead letter); default: never. */
    permanent?: (err: Error) => boolean;
    retry?: RetryPolicy;
  }): Promise<DrainResult> {
    const limit = opts.limit ?? 50;
    const kinds = opts.kinds ?? Object.values(OUTBOX_KINDS);
    return this.prisma.$transaction(
      async (tx) => {
        const rows = await tx.$queryRaw<OutboxRow[]>`
          SELECT "id", "runId"::text AS "runId", "kind", "payload", "attempts", "createdAt"
          FROM "Outbox"
          WHERE "publishedAt" IS NULL
            AND "deadAt" IS NULL
            AND ("nextAttemptAt" IS NULL OR "nextAttemptAt" <= now())
            AND "kind" = ANY(${kinds}::text[])
            AND (${opts.runId ?? null}::uuid IS NULL OR "runId" = ${opts.runId ?? null}::uuid)
            AND (${opts.prefix ?? null}::text IS NULL OR "payload"->>'prefix' = ${opts.prefix ?? null}::text)
          ORDER BY "id"
          LIMIT ${limit}
          FOR UPDATE SKIP LOCKED`;
        const result: DrainResult = { published: [], failed: [] };
        const blocked = new Set<string>();
        for (const row of rows) {
          if (blocked.has(row.runId)) continue;
          try {
            await opts.publish(row);
            result.published.push(row);
          } catch (err) {
            result.failed.push({ row, error: err as Error });
            blocked.add(row.runId);
          }
        }
        if (result.published.length) {
          const ids = result.published.map((r) => r.id);
          await tx.outbox.updateMany({
            where: { id: { in: ids } },
            data: { publishedAt: new Date(), attempts: { increment: 1 }, lastError: null },
          });
          const flowRuns = result.published.filter((r) => r.kind === OUTBOX_KINDS.flow).map((r) => r.runId);
          if (flowRuns.length) {
            await tx.trial.updateMany({
              where: { runId: { in: flowRuns }, status: 'PENDING' },
              data: { status: 'QUEUED' },
            });
          }
        }
        for (const { row, error } of result.failed) {
          await recordFailure(tx, [row.id], error.message, opts.permanent?.(error) ?? false, opts.retry);
        }
        return result;
      },
      // Publishing talks to Redis inside the transaction: allow for a slow one.
      { maxWait: 10_000, timeout: 60_000 },
    );
  }

  /**
   * Marks rows published (and a flow's PENDING trials QUEUED) in one
   * statement: the fast path right after a run is created, when the caller
   * has just published the rows it wrote. Rows already published (by a
   * concurrent drain, the publication being idempotent) are left as they are.
   * Returns how many rows this call marked.
   */
  async markPublished(ids: readonly bigint[]): Promise<number> {
    if (ids.length === 0) return 0;
    const [r] = await this.prisma.$queryRaw<Array<{ n: number }>>`
      WITH o AS (
        UPDATE "Outbox" SET "publishedAt" = now(), "attempts" = "attempts" + 1, "lastError" = NULL
        WHERE "id" = ANY(${ids.map(String)}::bigint[]) AND "publishedAt" IS NULL
        RETURNING "runId", "kind"
      ), t AS (
        UPDATE "Trial" SET "status" = 'QUEUED', "updatedAt" = now()
        WHERE "runId" IN (SELECT "runId" FROM o WHERE "kind" = ${OUTBOX_KINDS.flow}) AND "status" = 'PENDING'
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM o)::int AS n, (SELECT count(*) FROM t)::int AS trials`;
    return r?.n ?? 0;
  }

  /** Records a failed publish attempt of rows that stay pending (the drain retries them after a backoff). */
  async markFailed(
    ids: readonly bigint[],
    error: string,
    permanent = false,
    retry?: RetryPolicy,
  ): Promise<void> {
    if (ids.length === 0) return;
    await recordFailure(this.prisma, ids, error, permanent, retry);
  }

  /** Dead letters (newest first), of one queue prefix when given. */
  async deadLetters(filter: { prefix?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const rows = await this.prisma.outbox.findMany({
      where: {
        deadAt: { not: null },
        publishedAt: null,
        ...(filter.prefix ? { payload: { path: ['prefix'], equals: filter.prefix } } : {}),
      },
      orderBy: { id: 'desc' },
      take: filter.limit ?? 20,
      select: {
        id: true,
        runId: true,
        kind: true,
        attempts: true,
        lastError: true,
        createdAt: true,
        deadAt: true,
      },
    });
    return rows.map((r) => ({ ...r, deadAt: r.deadAt! }));
  }

  /** Unpublished rows still to be published (all, of one run, or of one queue prefix); dead letters are not. */
  async pendingCount(filter: { runId?: string; prefix?: string } = {}): Promise<number> {
    return this.prisma.outbox.count({
      where: {
        publishedAt: null,
        deadAt: null,
        ...(filter.runId ? { runId: filter.runId } : {}),
        ...(filter.prefix ? { payload: { path: ['prefix'], equals: filter.prefix } } : {}),
      },
    });
  }

  async forRun(runId: string) {
    return this.prisma.outbox.findMany({ where: { runId }, orderBy: { id: 'asc' } });
  }
}

/** One failed attempt: count it, keep the error, back off; a permanent one at the cap becomes a dead letter. */
async function recordFailure(
  db: Pick<PrismaClient, '$executeRaw'>,
  ids: readonly bigint[],
  error: string,
  permanent: boolean,
  retry: RetryPolicy = OUTBOX_RETRY,
): Promise<void> {
  const cap = permanent ? retry.permanentCapSeconds : retry.transientCapSeconds;
  await db.$executeRaw`
    UPDATE "Outbox" SET
      "attempts" = "attempts" + 1,
      "lastError" = ${error.slice(0, 2000)},
      "nextAttemptAt" = now() + make_interval(
        secs => LEAST(${retry.baseSeconds}::float8 * power(2, LEAST("attempts", 20)), ${cap}::float8)),
      "deadAt" = CASE WHEN ${permanent}::boolean AND "attempts" + 1 >= ${retry.maxAttempts}::int THEN now() END
    WHERE "id" = ANY(${ids.map(String)}::bigint[]) AND "publishedAt" IS NULL`;
}
