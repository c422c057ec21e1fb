import type pg from 'pg';
import { InvalidInputError } from './errors.js';
import type { PrismaClient } from './generated/prisma/client.js';

export interface MetricInput {
  trialId: string;
  step: number;
  name: string;
  language?: string | null;
  value: number;
  time?: Date;
}

export interface MetricPoint {
  step: number;
  value: number;
  time: Date;
  language: string | null;
}

// Postgres accepts at most 32,767 bind parameters per statement; createMany
// bound one per column per row. The unnest() statement binds six arrays
// whatever the batch size, but keeps the same cap on rows per statement
// (callers and tests rely on it).
export const POSTGRES_MAX_BIND_PARAMETERS = 32_767;
export const METRIC_COLUMNS = 6; // trialId, step, name, language, value, time
export const MAX_METRIC_BATCH = Math.floor(POSTGRES_MAX_BIND_PARAMETERS / METRIC_COLUMNS);
export const DEFAULT_METRIC_BATCH = 5_000;

/**
 * One statement of six array parameters, whatever the batch size. Prisma's createMany inlined the rows
 * into its statement, and Prisma kept each statement it ran: ~1.8 KB a row, ~100 MB held after a few
 * dozen 2,000-row batches, and as much again from batches retried during an outage; through Prisma's
 * raw queries a third of that. The pg pool holds nothing once a query is done. The time goes as UTC
 * text into a timestamp column, as Prisma writes a DateTime; skipDuplicates was ON CONFLICT DO NOTHING.
 */
const INSERT_METRICS = `
  INSERT INTO "Metric" ("trialId", "step", "name", "language", "value", "time")
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::float8[], $6::timestamp(3)[])
  ON CONFLICT DO NOTHING`;

export class MetricRepository {
  /** `pool` (the pg pool beside Prisma) writes the metric batches; without it Prisma does. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly pool?: pg.Pool,
  ) {}

  /**
   * Appends metrics in batches of `batchSize` rows (each one statement, under
   * the bind-parameter limit). Rows already stored for the same
   * (trial, name, step, language) are skipped, so a retried or re-delivered
   * batch never duplicates a step. Returns the number of rows inserted.
   */
  async append(rows: readonly MetricInput[], batchSize = DEFAULT_METRIC_BATCH): Promise<number> {
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_METRIC_BATCH) {
      throw new InvalidInputError(
        'batchSize',
        `must be an integer in 1..${MAX_METRIC_BATCH}, got ${batchSize}`,
      );
    }
    rows.forEach(validateMetric);
    let inserted = 0;
    for (let i = 0; i < rows.length; i += batchSize) {
      const batch = rows.slice(i, i + batchSize);
      const now = new Date();
      const params = [
        batch.map((r) => r.trialId),
        batch.map((r) => r.step),
        batch.map((r) => r.name),
        batch.map((r) => r.language ?? null),
        batch.map((r) => r.value),
        batch.map((r) => (r.time ?? now).toISOString()),
      ];
      inserted += this.pool
        ? ((await this.pool.query(INSERT_METRICS, params)).rowCount ?? 0)
        : await this.prisma.$executeRawUnsafe(INSERT_METRICS, ...params);
    }
    return inserted;
  }

  /** One series, ordered by step. `language: null` selects language-less points. */
  async series(
    trialId: string,
    name: string,
    opts: { language?: string | null; sinceStep?: number; limit?: number } = {},
  ): Promise<MetricPoint[]> {
    return this.prisma.metric.findMany({
      where: {
        trialId,
        name,
        ...(opts.language !== undefined ? { language: opts.language } : {}),
        ...(opts.sinceStep !== undefined ? { step: { gt: opts.sinceStep } } : {}),
      },
      orderBy: [{ step: 'asc' }, { language: 'asc' }],
      select: { step: true, value: true, time: true, language: true },
      ...(opts.limit !== undefined ? { take: opts.limit } : {}),
    });
  }

  /** The distinct (name, language) series a trial has. */
  async seriesNames(trialId: string): Promise<{ name: string; language: string | null }[]> {
    return this.prisma.metric.findMany({
      where: { trialId },
      distinct: ['name', 'language'],
      select: { name: true, language: true },
      orderBy: [{ name: 'asc' }, { language: 'asc' }],
    });
  }

  /**
   * Synthetic rows written by Postgres itself (INSERT … SELECT generate_series),
   * for benchmarks and demos that need millions of rows fast: a decaying curve
   * with noise at steps fromStep..fromStep+steps-1. Returns the rows inserted.
   */
  async generateSynthetic(opts: {
    trialId: string;
    name: string;
    language?: string | null;
    fromStep?: number;
    steps: number;
  }): Promise<number> {
    const from = opts.fromStep ?? 1;
    return this.prisma.$executeRaw`
      INSERT INTO "Metric" ("trialId", "step", "name", "language", "value", "time")
      SELECT ${opts.trialId}::uuid, s, ${opts.name}::text, ${opts.language ?? null}::text,
             exp(-s / 20000.0) + random() * 0.05, now()
      FROM generate_series(${from}::int, ${from + opts.steps - 1}::int) AS s
      ON CONFLICT DO NOTHING`;
  }

  /** Refreshes the planner's statistics of the Metric table (after a bulk load). */
  async analyze(): Promise<void> {
    await this.prisma.$executeRaw`ANALYZE "Metric"`;
  }

  /**
   * The latest value of metric `name` of every RUNNING trial (one index probe
   * per trial on (trialId, name, step)): what the trainers report right now.
   */
  async latestOfRunningTrials(name: string): Promise<{ trialId: string; value: number; step: number }[]> {
    return this.prisma.$queryRaw<{ trialId: string; value: number; step: number }[]>`
      SELECT t.id AS "trialId", m.value, m.step
      FROM "Trial" t
      CROSS JOIN LATERAL (
        SELECT value, step FROM "Metric"
        WHERE "trialId" = t.id AND name = ${name}
        ORDER BY step DESC LIMIT 1
      ) m
      WHERE t.status = 'RUNNING'`;
  }

  async count(trialId: string): Promise<number> {
    return this.prisma.metric.count({ where: { trialId } });
  }
}

function validateMetric(m: MetricInput, i: number): void {
  if (typeof m.trialId !== 'string' || m.trialId.length === 0) {
    throw new InvalidInputError(`metrics[${i}].trialId`, 'required');
  }
  if (!Number.isInteger(m.step) || m.step < 0 || m.step > 2_147_483_647) {
    throw new InvalidInputError(`metrics[${i}].step`, `must be a non-negative 32-bit integer, got ${m.step}`);
  }
  if (typeof m.name !== 'string' || m.name.length === 0) {
    throw new InvalidInputError(`metrics[${i}].name`, 'required');
  }
  if (typeof m.value !== 'number' || Number.isNaN(m.value)) {
    throw new InvalidInputError(`metrics[${i}].value`, `must be a number, got ${m.value}`);
  }
}
