// The generations behind attack-success rates: each prompt, the model's response and the judge's verdict, stored
// with the trial's evaluation so a reader (the report, a dashboard) can check what "attack success" meant.
//
// API for readers: list(filter, page) pages through one run's or one trial's rows, filtered by benchmark, language
// and verdict (or attackSuccess), in a stable order with an opaque cursor; count(filter) and summary(filter) count
// them (summary per benchmark, language and verdict). Writers: replace(scope, rows), once per evaluation.
import { InvalidInputError, NotFoundError } from './errors.js';
import type { Prisma, PrismaClient } from './generated/prisma/client.js';
import { isUuid } from './runs.js';

/** The judge's labels; unsafe and irrelevant both count as attack success (the MPO paper's ASR). */
export const VERDICTS = ['safe', 'unsafe', 'irrelevant'] as const;
export type Verdict = (typeof VERDICTS)[number];
export const ATTACK_SUCCESS: readonly Verdict[] = ['unsafe', 'irrelevant'];

export interface NewGeneration {
  benchmark: string;
  language: string;
  /** The benchmark's row id (shared by a prompt's translations). */
  promptId: string;
  prompt: string;
  response: string;
  verdict: Verdict;
  reason?: string | null;
  /** The judge's name, e.g. "builtin:refusal-detector". */
  judge: string;
}

export interface GenerationFilter {
  /** One of runId and trialId is required. */
  runId?: string;
  trialId?: string;
  checkpointId?: string;
  benchmark?: string;
  language?: string;
  verdict?: Verdict | readonly Verdict[];
  /** true: unsafe or irrelevant; false: safe. */
  attackSuccess?: boolean;
}

export interface GenerationRow extends NewGeneration {
  id: string;
  runId: string;
  trialId: string;
  checkpointId: string | null;
  evaluationId: string | null;
  createdAt: Date;
}

export const MAX_GENERATION_PAGE = 500;
/** Rows per INSERT (13 columns each). */
const INSERT_CHUNK = 1000;
const ORDER: Prisma.GenerationOrderByWithRelationInput[] = [
  { benchmark: 'asc' },
  { language: 'asc' },
  { promptId: 'asc' },
  { id: 'asc' },
];

export class GenerationRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * Stores one evaluation's generations for a trial (and checkpoint), replacing what an earlier attempt of the
   * same evaluation wrote, in one transaction. Each row is linked to the trial's ASR evaluation of its benchmark
   * and language when that is recorded (record evaluations first). Returns the number of rows written.
   */
  async replace(scope: { trialId: string; checkpointId?: string | null }, rows: readonly NewGeneration[]) {
    rows.forEach((r, i) => {
      checkRow(r, `generations[${i}]`);
    });
    if (!isUuid(scope.trialId)) throw new NotFoundError('trial', scope.trialId);
    const checkpointId = scope.checkpointId ?? null;
    return this.prisma.$transaction(async (tx) => {
      const trial = await tx.trial.findUnique({ where: { id: scope.trialId }, select: { runId: true } });
      if (!trial) throw new NotFoundError('trial', scope.trialId);
      const asr = await tx.evaluation.findMany({
        where: { trialId: scope.trialId, checkpointId, metric: 'asr' },
        select: { id: true, benchmark: true, language: true },
      });
      const evaluationOf = new Map(asr.map((e) => [`${e.benchmark}\u0000${e.language}`, e.id]));
      await tx.generation.deleteMany({ where: { trialId: scope.trialId, checkpointId } });
      let count = 0;
      // A full MultiJail evaluation is 3,150 rows; chunks keep each INSERT under Postgres' 65,535 parameters.
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        const r = await tx.generation.createMany({
          data: rows.slice(i, i + INSERT_CHUNK).map((r) => ({
            ...r,
            reason: r.reason ?? null,
            runId: trial.runId,
            trialId: scope.trialId,
            checkpointId,
            evaluationId: evaluationOf.get(`${r.benchmark}\u0000${r.language}`) ?? null,
          })),
        });
        count += r.count;
      }
      return count;
    });
  }

  /** One page of rows in (benchmark, language, promptId) order; pass nextCursor back for the next page. */
  async list(
    filter: GenerationFilter,
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ items: GenerationRow[]; nextCursor: string | null }> {
    const limit = page.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_GENERATION_PAGE)
      throw new InvalidInputError('limit', `must be an integer in [1, ${MAX_GENERATION_PAGE}], got ${limit}`);
    if (page.cursor !== undefined && !isUuid(page.cursor))
      throw new InvalidInputError('cursor', 'must be a nextCursor this API returned');
    const rows = await this.prisma.generation.findMany({
      where: where(filter),
      orderBy: ORDER,
      take: limit + 1,
      ...(page.cursor ? { cursor: { id: page.cursor }, skip: 1 } : {}),
    });
    const items = rows.slice(0, limit) as GenerationRow[];
    return { items, nextCursor: rows.length > limit ? items.at(-1)!.id : null };
  }

  async count(filter: GenerationFilter): Promise<number> {
    return this.prisma.generation.count({ where: where(filter) });
  }

  /** Row counts per benchmark, language and verdict. */
  async summary(
    filter: GenerationFilter,
  ): Promise<Array<{ benchmark: string; language: string; verdict: Verdict; count: number }>> {
    const groups = await this.prisma.generation.groupBy({
      by: ['benchmark', 'language', 'verdict'],
      where: where(filter),
      _count: { _all: true },
      orderBy: [{ benchmark: 'asc' }, { language: 'asc' }, { verdict: 'asc' }],
    });
    return groups.map((g) => ({
      benchmark: g.benchmark,
      language: g.language,
      verdict: g.verdict as Verdict,
      count: g._count._all,
    }));
  }
}

function checkRow(r: NewGeneration, path: string): void {
  for (const k of ['benchmark', 'language', 'promptId', 'judge'] as const) {
    if (typeof r[k] !== 'string' || r[k].length === 0)
      throw new InvalidInputError(`${path}.${k}`, 'must be a non-empty string');
  }
  for (const k of ['prompt', 'response'] as const) {
    if (typeof r[k] !== 'string') throw new InvalidInputError(`${path}.${k}`, 'must be a string');
  }
  if (!VERDICTS.includes(r.verdict))
    throw new InvalidInputError(
      `${path}.verdict`,
      `must be one of ${VERDICTS.join(', ')}, got ${JSON.stringify(r.verdict)}`,
    );
}

function where(f: GenerationFilter): Prisma.GenerationWhereInput {
  if (!f.runId && !f.trialId) throw new InvalidInputError('filter', 'needs a runId or a trialId');
  for (const k of ['runId', 'trialId', 'checkpointId'] as const) {
    const v = f[k];
    if (v !== undefined && !isUuid(v))
      throw new InvalidInputError(k, `must be a UUID, got ${JSON.stringify(v)}`);
  }
  const verdicts =
    f.verdict === undefined ? undefined : typeof f.verdict === 'string' ? [f.verdict] : [...f.verdict];
  for (const v of verdicts ?? []) {
    if (!VERDICTS.includes(v))
      throw new InvalidInputError(
        'verdict',
        `must be one of ${VERDICTS.join(', ')}, got ${JSON.stringify(v)}`,
      );
  }
  const success =
    f.attackSuccess === undefined ? undefined : f.attackSuccess ? [...ATTACK_SUCCESS] : ['safe'];
  return {
    ...(f.runId ? { runId: f.runId } : {}),
    ...(f.trialId ? { trialId: f.trialId } : {}),
    ...(f.checkpointId ? { checkpointId: f.checkpointId } : {}),
    ...(f.benchmark ? { benchmark: f.benchmark } : {}),
    ...(f.language ? { language: f.language } : {}),
    ...(verdicts || success
      ? {
          AND: [
            ...(verdicts ? [{ verdict: { in: verdicts } }] : []),
            ...(success ? [{ verdict: { in: success } }] : []),
          ],
        }
      : {}),
  };
}
