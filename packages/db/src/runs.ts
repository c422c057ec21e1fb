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
  trials: NewTrial[];
  /**
   * Messages to publish after commit (e.g. the run's job flow). They are
   * written in the same transaction as the run, so a run never exists without
   * its jobs, nor jobs without their run.
   */
  outbox?: (runId: string, trialIds: string[]) => OutboxMessage[];
}

export interface RunFilter {
  ownerTokenId?: string | null;
  status?: RunStatus;
  limit?: number;
  offset?: number;
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
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * Creates a run, its trials and its outbox messages in one transaction.
   * With an idempotency key already used by the same owner, returns that run
   * instead (`created: false`) and writes nothing.
   */
  async create(input: CreateRunInput) {
    const existing = await this.findByIdempotencyKey(input.ownerTokenId, input.idempotencyKey);
    if (existing) return { run: existing, created: false };
    try {
      const run = await this.prisma.$transaction(async (tx) => {
        const run = await tx.run.create({
          data: {
            name: input.name,
            spec: input.spec,
            ownerTokenId: input.ownerTokenId ?? null,
            idempotencyKey: input.idempotencyKey ?? null,
            trials: {
              create: input.trials.map((t, index) => ({
                index,
                hyperparameters: t.hyperparameters,
                totalSteps: t.totalSteps ?? null,
              })),
            },
          },
          include: { trials: { select: trialSelect, orderBy: { index: 'asc' } } },
        });
        const messages = input.outbox?.(
          run.id,
          run.trials.map((t) => t.id),
        );
        if (messages?.length) {
          await tx.outbox.createMany({
            data: messages.map((m) => ({ runId: run.id, kind: m.kind, payload: m.payload })),
          });
        }
        return run;
      });
      return { run, created: true };
    } catch (err) {
      // Two requests with one key raced: the unique index let one through.
      if ((err as { code?: string }).code === 'P2002' && input.idempotencyKey) {
        const winner = await this.findByIdempotencyKey(input.ownerTokenId, input.idempotencyKey);
        if (winner) return { run: winner, created: false };
      }
      throw err;
    }
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
        include: { _count: { select: { trials: true } } },
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
        where: { runId: id, status: { in: ['PENDING', 'QUEUED'] } },
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
    const out = { PENDING: 0, QUEUED: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0, STOPPED: 0, CANCELLED: 0 };
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
        ...(['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(status) ? { finishedAt: now } : {}),
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
