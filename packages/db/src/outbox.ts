// The transactional outbox's publishing side. Rows are written with the run in
// RunRepository.create (and requestCancel); a publisher in the API claims
// unpublished rows, pushes them to Redis, and marks them published in the same
// Postgres transaction that holds their row locks. A crash between the Redis
// write and the commit publishes the row again later, which is why every
// publication must be idempotent (deterministic job ids, SET of a key).
import type { PrismaClient } from './generated/prisma/client.js';

/** What an outbox row asks the publisher to do. */
export const OUTBOX_KINDS = {
  /** payload: the run's BullMQ flow tree; on publish the run's PENDING trials become QUEUED. */
  flow: 'flow',
  /** payload: {runId, requestedAt}; sets the run's cancel key in Redis. */
  cancel: 'cancel',
} as const;

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
   */
  async drain(opts: {
    limit?: number;
    runId?: string;
    publish: (row: OutboxRow) => Promise<void>;
  }): Promise<DrainResult> {
    const limit = opts.limit ?? 50;
    return this.prisma.$transaction(
      async (tx) => {
        const rows = await tx.$queryRaw<OutboxRow[]>`
          SELECT "id", "runId"::text AS "runId", "kind", "payload", "attempts", "createdAt"
          FROM "Outbox"
          WHERE "publishedAt" IS NULL AND (${opts.runId ?? null}::uuid IS NULL OR "runId" = ${opts.runId ?? null}::uuid)
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
          await tx.outbox.update({
            where: { id: row.id },
            data: { attempts: { increment: 1 }, lastError: String(error.message).slice(0, 2000) },
          });
        }
        return result;
      },
      // Publishing talks to Redis inside the transaction: allow for a slow one.
      { maxWait: 10_000, timeout: 60_000 },
    );
  }

  /** Unpublished rows (all, or of one run). */
  async pendingCount(runId?: string): Promise<number> {
    return this.prisma.outbox.count({ where: { publishedAt: null, ...(runId ? { runId } : {}) } });
  }

  async forRun(runId: string) {
    return this.prisma.outbox.findMany({ where: { runId }, orderBy: { id: 'asc' } });
  }
}
