import type { PrismaClient } from './generated/prisma/client.js';

export interface NewCheckpoint {
  trialId: string;
  step: number;
  path: string;
  bytes: number | bigint;
  sha256: string;
}

export interface NewEvaluation {
  trialId: string;
  checkpointId?: string | null;
  benchmark: string;
  language: string;
  metric: string;
  value: number;
  n: number;
}

/** Checkpoints and evaluation results of trials. */
export class ArtifactRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Records a checkpoint; recording the same (trial, step) again updates it. */
  async recordCheckpoint(c: NewCheckpoint) {
    if (!/^[0-9a-f]{64}$/.test(c.sha256))
      throw new Error(`checkpoint.sha256: expected 64 hex digits, got "${c.sha256}"`);
    const data = { path: c.path, bytes: BigInt(c.bytes), sha256: c.sha256 };
    return this.prisma.checkpoint.upsert({
      where: { trialId_step: { trialId: c.trialId, step: c.step } },
      create: { trialId: c.trialId, step: c.step, ...data },
      update: data,
    });
  }

  async latestCheckpoint(trialId: string) {
    return this.prisma.checkpoint.findFirst({ where: { trialId }, orderBy: { step: 'desc' } });
  }

  async checkpoints(trialId: string) {
    return this.prisma.checkpoint.findMany({ where: { trialId }, orderBy: { step: 'asc' } });
  }

  /** Stores results; one already stored (a duplicated eval job) is kept as it is (first write wins). */
  async recordEvaluations(rows: NewEvaluation[]) {
    return this.prisma.evaluation.createMany({
      data: rows.map((r) => ({ ...r, checkpointId: r.checkpointId ?? null })),
      skipDuplicates: true,
    });
  }

  async evaluations(filter: { trialId?: string; runId?: string; benchmark?: string }) {
    return this.prisma.evaluation.findMany({
      where: {
        ...(filter.trialId ? { trialId: filter.trialId } : {}),
        ...(filter.runId ? { trial: { runId: filter.runId } } : {}),
        ...(filter.benchmark ? { benchmark: filter.benchmark } : {}),
      },
      orderBy: [{ trialId: 'asc' }, { benchmark: 'asc' }, { language: 'asc' }, { metric: 'asc' }],
    });
  }
}
