import { randomUUID } from 'node:crypto';
import { isRunTerminal, TRIAL_STATUSES, TRIAL_UNSTARTED_STATUSES } from '@mpo/queue/statuses';
import type pg from 'pg';
import { NotFoundError } from './errors.js';
import type { Prisma, PrismaClient, RunStatus, TrialStatus } from './generated/prisma/client.js';

export type Json = Prisma.InputJsonValue;

export interface NewTrial {
  hyperparameters: Json;
  totalSteps?: number;
}

export interface OutboxMessage {
  kind: string;
  payload: Json;
}

export interface CreateRunInput {
  name: string;
  spec: Json;
  ownerTokenId?: string | null;
  idempotencyKey?: string | null;
  /** The trials created now (the first of the run's plan: the rest are created by `materialize`). */
  trials: NewTrial[];
  /** Trials the run plans (default: `trials.length`). */
  trialCount?: number;
  /** Rank-steps of all planned trials (quota of the uncreated ones; default 0). */
  rankSteps?: number;
  /**
   * Messages to publish after commit (e.g. the run's job flow). They are
   * written in the same transaction as the run, so a run never exists without
   * its jobs, nor jobs without their run.
   */
  outbox?: (runId: string, trialIds: string[]) => OutboxMessage[];
}

export interface MaterializedTrial {
  id: string;
  index: number;
  hyperparameters: Json;
}

export interface MaterializeResult {
  trialCount: number;
  /** The run's cancel was requested: the trials created are CANCELLED and need no jobs. */
  cancelled: boolean;
  /** The trials created now, in index order. */
  trials: MaterializedTrial[];
}

export interface RunFilter {
  ownerTokenId?: string | null;
  status?: RunStatus;
  limit?: number;
  offset?: number;
}

interface CreatedRunRow {
  id: string;
  name: string;
  spec: Prisma.JsonValue;
  status: string;
  ownerTokenId: string | null;
  idempotencyKey: string | null;
  createdAt: Date;
  updatedAt: Date;
  trialCount: number;
  rankSteps: bigint | number | string;
  outboxIds: Array<bigint | number | string>;
  trialsUpdatedAt: Date | null;
}

/** A run as `create` and `get` return it: its columns and its trials. */
export interface CreatedRun {
  id: string;
  name: string;
  spec: Prisma.JsonValue;
  status: RunStatus;
  ownerTokenId: string | null;
  idempotencyKey: string | null;
  createdAt: Date;
  updatedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  cancelRequestedAt: Date | null;
  trialCount: number;
  rankSteps: bigint;
  trials: Array<{
    id: string;
    index: number;
    hyperparameters: Prisma.JsonValue;
    status: TrialStatus;
    attempt: number;
    currentStep: number;
    totalSteps: number | null;
    bestMetric: number | null;
    stopReason: string | null;
    stoppedAtRung: number | null;
    error: string | null;
    startedAt: Date | null;
    finishedAt: Date | null;
    updatedAt: Date;
  }>;
}

/** Prisma reports a unique violation as P2002, or from raw SQL as P2010 carrying Postgres's 23505. */
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; meta?: { code?: string }; message?: string };
  return (
    e.code === 'P2002' ||
    (e.code === 'P2010' && e.meta?.code === '23505') ||
    /23505|unique constraint/i.test(e.message ?? '')
  );
}

const trialSelect = {
  id: true,
  index: true,
  hyperparameters: true,
  status: true,
  attempt: true,
  currentStep: true,
  totalSteps: true,
  bestMetric: true,
  stopReason: true,
  stoppedAtRung: true,
  error: true,
  startedAt: true,
  finishedAt: true,
  updatedAt: true,
} as const;

export class RunRepository {
  /** `pool`, when given, serves the hot read `trialIds` without Prisma's per-query overhead. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly pool?: pg.Pool,
  ) {}

  /**
   * Creates a run, its trials and its outbox messages atomically: one INSERT
   * statement (data-modifying CTEs), one round trip, no interactive
   * transaction. Ids are drawn here so the outbox messages can name them.
   * With an idempotency key already used by the same owner, returns that run
   * instead (`created: false`) and writes nothing. `outboxIds` are the ids of
   * the messages written (to mark them published right away).
   */
  async create(input: CreateRunInput): Promise<{ run: CreatedRun; created: boolean; outboxIds: bigint[] }> {
    const existing = await this.findByIdempotencyKey(input.ownerTokenId, input.idempotencyKey);
    if (existing) return { run: existing, created: false, outboxIds: [] };
    const runId = randomUUID();
    const trialIds = input.trials.map(() => randomUUID());
    // Built before anything is written: a failure here writes nothing.
    const messages = input.outbox?.(runId, trialIds) ?? [];
    const trials = input.trials.map((t, i) => ({
      id: trialIds[i],
      h: t.hyperparameters,
      ts: t.totalSteps ?? null,
    }));
    try {
      const [row] = await this.prisma.$queryRaw<Array<CreatedRunRow>>`
        WITH r AS (
          INSERT INTO "Run" ("id", "name", "spec", "ownerTokenId", "idempotencyKey", "trialCount", "rankSteps", "updatedAt")
          VALUES (${runId}::uuid, ${input.name}, ${JSON.stringify(input.spec)}::jsonb,
                  ${input.ownerTokenId ?? null}::uuid, ${input.idempotencyKey ?? null},
                  ${input.trialCount ?? input.trials.length}::int, ${input.rankSteps ?? 0}::bigint, now())
          RETURNING *
        ), t AS (
          INSERT INTO "Trial" ("id", "runId", "index", "hyperparameters", "totalSteps", "updatedAt")
          SELECT (x.e->>'id')::uuid, ${runId}::uuid, (x.i - 1)::int, x.e->'h', (x.e->>'ts')::int, now()
          FROM jsonb_array_elements(${JSON.stringify(trials)}::jsonb) WITH ORDINALITY AS x(e, i)
          RETURNING "id", "index", "updatedAt"
        ), o AS (
          INSERT INTO "Outbox" ("runId", "kind", "payload")
          SELECT ${runId}::uuid, x.e->>'kind', x.e->'payload'
          FROM jsonb_array_elements(${JSON.stringify(messages)}::jsonb) WITH ORDINALITY AS x(e, i)
          ORDER BY x.i
          RETURNING "id"
        )
        SELECT r."id"::text AS "id", r."name", r."spec", r."status"::text AS "status",
               r."ownerTokenId"::text AS "ownerTokenId", r."idempotencyKey", r."createdAt", r."updatedAt",
               r."trialCount", r."rankSteps",
               (SELECT coalesce(array_agg(o."id" ORDER BY o."id"), '{}') FROM o) AS "outboxIds",
               (SELECT max(t."updatedAt") FROM t) AS "trialsUpdatedAt"
        FROM r`;
      const r = row!;
      const run: CreatedRun = {
        id: r.id,
        name: r.name,
        spec: r.spec,
        status: r.status as RunStatus,
        ownerTokenId: r.ownerTokenId,
        idempotencyKey: r.idempotencyKey,
        createdAt: r.createdAt,
        updatedAt: r.updatedAt,
        startedAt: null,
        finishedAt: null,
        cancelRequestedAt: null,
        trialCount: r.trialCount,
        rankSteps: BigInt(r.rankSteps),
        trials: input.trials.map((t, index) => ({
          id: trialIds[index]!,
          index,
          hyperparameters: t.hyperparameters as Prisma.JsonValue,
          status: 'PENDING' as TrialStatus,
          attempt: 0,
          currentStep: 0,
          totalSteps: t.totalSteps ?? null,
          bestMetric: null,
          stopReason: null,
          stoppedAtRung: null,
          error: null,
          startedAt: null,
          finishedAt: null,
          updatedAt: r.trialsUpdatedAt ?? r.updatedAt,
        })),
      };
      return { run, created: true, outboxIds: r.outboxIds.map((id) => BigInt(id)) };
    } catch (err) {
      // Two requests with one key raced: the unique index let one through.
      if (isUniqueViolation(err) && input.idempotencyKey) {
        const winner = await this.findByIdempotencyKey(input.ownerTokenId, input.idempotencyKey);
        if (winner) return { run: winner, created: false, outboxIds: [] };
      }
      throw err;
    }
  }

  /** Whether the token already created a run with this Idempotency-Key (a replay takes no new quota). */
  async hasIdempotencyKey(ownerTokenId: string, key: string): Promise<boolean> {
    const run = await this.prisma.run.findUnique({
      where: { ownerTokenId_idempotencyKey: { ownerTokenId, idempotencyKey: key } },
      select: { id: true },
    });
    return run !== null;
  }

  private async findByIdempotencyKey(ownerTokenId?: string | null, key?: string | null) {
    if (!key || !ownerTokenId) return null;
    return this.prisma.run.findUnique({
      where: { ownerTokenId_idempotencyKey: { ownerTokenId, idempotencyKey: key } },
      include: { trials: { select: trialSelect, orderBy: { index: 'asc' } } },
    });
  }

  /** A run with its trials; `ownerTokenId` (when given) must own it. */
  async get(id: string, opts: { ownerTokenId?: string | null } = {}) {
    if (!isUuid(id)) throw new NotFoundError('run', id);
    const run = await this.prisma.run.findFirst({
      where: { id, ...(opts.ownerTokenId !== undefined ? { ownerTokenId: opts.ownerTokenId } : {}) },
      include: { trials: { select: trialSelect, orderBy: { index: 'asc' } } },
    });
    if (!run) throw new NotFoundError('run', id);
    return run;
  }

  /** A run's spec alone (what a worker rebuilds a trial's job from: @mpo/queue `trainJobFromRef`). */
  async spec(id: string): Promise<Prisma.JsonValue> {
    if (!isUuid(id)) throw new NotFoundError('run', id);
    const run = await this.prisma.run.findUnique({ where: { id }, select: { spec: true } });
    if (!run) throw new NotFoundError('run', id);
    return run.spec;
  }

  /**
   * Creates a run's next trials (rows only; the caller publishes their jobs, then `markQueued`), under a
   * row lock on the run (SELECT … FOR UPDATE) so that agents topping up one run at once never create a
   * trial twice (also the unique (runId, index)). `window`: create trials until this many are created
   * and not started (PENDING or QUEUED), or 'all' for every trial left. A run whose cancel was requested
   * gets every trial left at once, CANCELLED (no jobs); a finished run gets none. `plan(from, to)` gives
   * the rows of trials from ≤ index < to (the spec's deterministic plan). `starting`: a trial being
   * started now, not counted as unstarted whatever its status says yet.
   */
  async materialize(
    runId: string,
    window: number | 'all',
    plan: (from: number, to: number) => NewTrial[],
    starting?: string,
  ): Promise<MaterializeResult> {
    if (!isUuid(runId)) throw new NotFoundError('run', runId);
    return this.prisma.$transaction(async (tx) => {
      const [run] = await tx.$queryRaw<
        Array<{ trialCount: number; status: RunStatus; cancelRequestedAt: Date | null }>
      >`SELECT "trialCount", "status", "cancelRequestedAt" FROM "Run" WHERE "id" = ${runId}::uuid FOR UPDATE`;
      if (!run) throw new NotFoundError('run', runId);
      const [c] = await tx.$queryRaw<Array<{ created: number; unstarted: number }>>`
        SELECT count(*)::int AS "created",
               (count(*) FILTER (WHERE "status"::text = ANY(${[...TRIAL_UNSTARTED_STATUSES]}::text[])
                                  AND "id"::text IS DISTINCT FROM ${starting ?? null}::text))::int AS "unstarted"
        FROM "Trial" WHERE "runId" = ${runId}::uuid`;
      const created = c?.created ?? 0;
      const cancelled = run.cancelRequestedAt !== null;
      // A finished run creates nothing more; a cancelled one still creates its leftovers, as CANCELLED.
      const left = run.status === 'SUCCEEDED' || run.status === 'FAILED' ? 0 : run.trialCount - created;
      const n = cancelled || window === 'all' ? left : Math.min(left, window - (c?.unstarted ?? 0));
      const result = { trialCount: run.trialCount, cancelled, trials: [] as MaterializedTrial[] };
      if (n <= 0) return result;
      const now = new Date();
      const rows = plan(created, created + n).map((t, i) => ({
        id: randomUUID(),
        runId,
        index: created + i,
        hyperparameters: t.hyperparameters,
        ...(t.totalSteps !== undefined ? { totalSteps: t.totalSteps } : {}),
        ...(cancelled ? { status: 'CANCELLED' as TrialStatus, finishedAt: now } : {}),
      }));
      await tx.trial.createMany({ data: rows });
      result.trials = rows.map((r) => ({ id: r.id, index: r.index, hyperparameters: r.hyperparameters }));
      return result;
    });
  }

  /** Trials whose jobs were published: PENDING → QUEUED (what the outbox does for a run's first trials). */
  async markQueued(trialIds: readonly string[]): Promise<void> {
    if (trialIds.length === 0) return;
    await this.prisma.trial.updateMany({
      where: { id: { in: [...trialIds] }, status: 'PENDING' },
      data: { status: 'QUEUED' },
    });
  }

  /**
   * Bytes a run's rows take in Postgres (`pg_column_size` of each row: after TOAST compression, without
   * tuple headers and indexes): the Run row, its Trial rows, its Outbox rows. What a request costs in
   * storage (issue 16: amplification).
   */
  async storedBytes(id: string): Promise<{ run: number; trials: number; outbox: number }> {
    const [r] = await this.prisma.$queryRaw<Array<{ run: number; trials: number; outbox: number }>>`
      SELECT (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM "Run" r WHERE r."id" = ${id}::uuid)::int AS "run",
             (SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM "Trial" t WHERE t."runId" = ${id}::uuid)::int AS "trials",
             (SELECT coalesce(sum(pg_column_size(o.*)), 0) FROM "Outbox" o WHERE o."runId" = ${id}::uuid)::int AS "outbox"`;
    return r!;
  }

  /**
   * A run's trials as (id, index), in one small query: the ownership check and
   * trial lookup of hot read paths (metrics), without loading the run.
   */
  async trialIds(
    id: string,
    opts: { ownerTokenId?: string | null } = {},
  ): Promise<Array<{ id: string; index: number }>> {
    if (!isUuid(id)) throw new NotFoundError('run', id);
    const sql = `SELECT t."id"::text AS "id", t."index"
      FROM "Run" r LEFT JOIN "Trial" t ON t."runId" = r."id"
      WHERE r."id" = $1::uuid AND ($2::boolean OR r."ownerTokenId" IS NOT DISTINCT FROM $3::uuid)
      ORDER BY t."index"`;
    const params = [id, opts.ownerTokenId === undefined, opts.ownerTokenId ?? null];
    const rows: Array<{ id: string | null; index: number | null }> = this.pool
      ? (await this.pool.query(sql, params)).rows
      : await this.prisma.$queryRawUnsafe(sql, ...params);
    if (rows.length === 0) throw new NotFoundError('run', id);
    return rows.filter((r) => r.id !== null).map((r) => ({ id: r.id!, index: r.index! }));
  }

  /** Which of `ids` belong to `ownerTokenId` (malformed ids are not). */
  async ownedBy(ids: readonly string[], ownerTokenId: string): Promise<Set<string>> {
    const valid = [...new Set(ids.filter(isUuid).map((i) => i.toLowerCase()))];
    if (valid.length === 0) return new Set();
    const rows = await this.prisma.run.findMany({
      where: { id: { in: valid }, ownerTokenId },
      select: { id: true },
    });
    return new Set(rows.map((r) => r.id));
  }

  async list(filter: RunFilter = {}) {
    const where = {
      ...(filter.ownerTokenId !== undefined ? { ownerTokenId: filter.ownerTokenId } : {}),
      ...(filter.status ? { status: filter.status } : {}),
    };
    const [total, items] = await Promise.all([
      this.prisma.run.count({ where }),
      this.prisma.run.findMany({
        where,
        orderBy: [{ createdAt: 'desc' }, { id: 'asc' }],
        take: filter.limit ?? 50,
        skip: filter.offset ?? 0,
      }),
    ]);
    return { total, items };
  }

  /**
   * Cancels a run: its trials that have not started become CANCELLED now;
   * running ones are left to their workers, which stop them at their next step
   * (they see the cancel key that `outbox` asks to set, written in the same
   * transaction). With no trial running the run itself is CANCELLED at once.
   * Idempotent; a run that already finished is returned untouched
   * (`finished: true`).
   */
  async requestCancel(
    id: string,
    opts: {
      ownerTokenId?: string | null;
      outbox?: (runId: string, requestedAt: Date) => OutboxMessage[];
    } = {},
  ) {
    if (!isUuid(id)) throw new NotFoundError('run', id);
    return this.prisma.$transaction(async (tx) => {
      // Row lock: concurrent cancels (and the worker finalizing) serialize on the run.
      const locked = await tx.$queryRaw<Array<{ status: RunStatus; cancelRequestedAt: Date | null }>>`
        SELECT "status", "cancelRequestedAt" FROM "Run"
        WHERE "id" = ${id}::uuid
          AND (${opts.ownerTokenId === undefined}::boolean OR "ownerTokenId" IS NOT DISTINCT FROM ${opts.ownerTokenId ?? null}::uuid)
        FOR UPDATE`;
      const run = locked[0];
      if (!run) throw new NotFoundError('run', id);
      if (run.status === 'SUCCEEDED' || run.status === 'FAILED') {
        return {
          status: run.status,
          cancelRequestedAt: run.cancelRequestedAt,
          cancelled: 0,
          stopping: 0,
          finished: true,
        };
      }
      const now = new Date();
      const requestedAt = run.cancelRequestedAt ?? now;
      const { count: cancelled } = await tx.trial.updateMany({
        where: { runId: id, status: { in: [...TRIAL_UNSTARTED_STATUSES] } },
        data: { status: 'CANCELLED', finishedAt: now },
      });
      const stopping = await tx.trial.count({ where: { runId: id, status: 'RUNNING' } });
      const status: RunStatus = stopping === 0 ? 'CANCELLED' : run.status;
      await tx.run.update({
        where: { id },
        data: {
          cancelRequestedAt: requestedAt,
          status,
          ...(status === 'CANCELLED' && run.status !== 'CANCELLED' ? { finishedAt: now } : {}),
        },
      });
      const messages = run.cancelRequestedAt ? [] : (opts.outbox?.(id, requestedAt) ?? []);
      if (messages.length) {
        await tx.outbox.createMany({
          data: messages.map((m) => ({ runId: id, kind: m.kind, payload: m.payload })),
        });
      }
      return { status, cancelRequestedAt: requestedAt, cancelled, stopping, finished: false };
    });
  }

  /** Trials by status over all runs (for gauges). */
  async trialStatusCounts(): Promise<Record<TrialStatus, number>> {
    const groups = await this.prisma.trial.groupBy({ by: ['status'], _count: { _all: true } });
    const out = Object.fromEntries(TRIAL_STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
    for (const g of groups) out[g.status] = g._count._all;
    return out;
  }

  async setStatus(id: string, status: RunStatus) {
    const now = new Date();
    return this.prisma.run.update({
      where: { id },
      data: {
        status,
        ...(status === 'RUNNING' ? { startedAt: now } : {}),
        ...(isRunTerminal(status) ? { finishedAt: now } : {}),
      },
    });
  }

  /** Deletes a run; trials, metrics, checkpoints, evaluations and outbox rows go with it. */
  async delete(id: string): Promise<void> {
    if (!isUuid(id)) throw new NotFoundError('run', id);
    const { count } = await this.prisma.run.deleteMany({ where: { id } });
    if (count === 0) throw new NotFoundError('run', id);
  }

  async trial(id: string) {
    if (!isUuid(id)) throw new NotFoundError('trial', id);
    const trial = await this.prisma.trial.findUnique({
      where: { id },
      select: { ...trialSelect, runId: true },
    });
    if (!trial) throw new NotFoundError('trial', id);
    return trial;
  }

  async updateTrial(
    id: string,
    data: Partial<{
      status: TrialStatus;
      attempt: number;
      currentStep: number;
      totalSteps: number;
      bestMetric: number | null;
      stopReason: string | null;
      stoppedAtRung: number | null;
      error: string | null;
      startedAt: Date;
      finishedAt: Date;
    }>,
  ) {
    return this.prisma.trial.update({ where: { id }, data, select: { ...trialSelect, runId: true } });
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string) => UUID_RE.test(s);
