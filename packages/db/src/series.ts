// Reading metric series for charts: every series of a run (or a filtered few),
// each downsampled in SQL to at most `points` points. The step range of a
// series comes from the MetricSeries catalog (kept by a trigger), the range is
// cut into `points` equal step buckets, and each bucket is answered by one
// backward probe of Metric's (trialId, name, step, language) index: the LAST
// point of the bucket (its real step and value, never an average). The cost is
// points × log(rows) per series, so a million-row run answers as fast as a
// thousand-row one.
import type { PrismaClient } from './generated/prisma/client.js';

export interface SeriesQuery {
  runId: string;
  /** Only this trial. */
  trialId?: string;
  /** Only this metric name. */
  name?: string;
  /** Only this language (series without a language are then left out). */
  language?: string;
  /** Only steps greater than this (incremental polling: pass the last step you have). */
  sinceStep?: number;
  /** Buckets per series: at most this many points come back for each. */
  points: number;
}

export interface SeriesInfo {
  trialId: string;
  trialIndex: number;
  name: string;
  language: string | null;
  firstStep: number;
  lastStep: number;
  /** Rows stored for the series. */
  count: number;
}

export interface DownsampledSeries extends SeriesInfo {
  steps: number[];
  values: number[];
}

export const MAX_POINTS = 10_000;

/**
 * The bucket bounds the SQL uses, for a series spanning steps lo..hi cut into
 * `points` buckets: bucket i is [lo + floor(i·n/points), lo + floor((i+1)·n/points))
 * with n = hi − lo + 1. Exported so tests can compute the same answer in JS.
 */
export function bucketBounds(lo: number, hi: number, points: number, i: number): [number, number] {
  const n = hi - lo + 1;
  return [lo + Math.floor((i * n) / points), lo + Math.floor(((i + 1) * n) / points)];
}

export class SeriesReader {
  constructor(private readonly prisma: PrismaClient) {}

  /** The series of a run that match the filters, ordered by trial index, name, language. */
  async list(q: Omit<SeriesQuery, 'points' | 'sinceStep'>): Promise<SeriesInfo[]> {
    const rows = await this.prisma.$queryRaw<
      Array<Omit<SeriesInfo, 'count'> & { count: bigint }>
    >`SELECT ms."trialId"::text AS "trialId", t."index" AS "trialIndex", ms."name", ms."language",
             ms."firstStep", ms."lastStep", ms."count"
      FROM "MetricSeries" ms JOIN "Trial" t ON t."id" = ms."trialId"
      WHERE t."runId" = ${q.runId}::uuid
        AND (${q.trialId ?? null}::uuid IS NULL OR ms."trialId" = ${q.trialId ?? null}::uuid)
        AND (${q.name ?? null}::text IS NULL OR ms."name" = ${q.name ?? null}::text)
        AND (${q.language ?? null}::text IS NULL OR ms."language" = ${q.language ?? null}::text)
      ORDER BY t."index", ms."name", ms."language" NULLS FIRST`;
    return rows.map((r) => ({ ...r, count: Number(r.count) }));
  }

  /** Every matching series, each downsampled to at most `points` points (last point per bucket). */
  async downsample(q: SeriesQuery): Promise<DownsampledSeries[]> {
    if (!Number.isInteger(q.points) || q.points < 1 || q.points > MAX_POINTS)
      throw new RangeError(`points must be an integer in 1..${MAX_POINTS}, got ${q.points}`);
    const since = q.sinceStep ?? -1;
    const trialId = q.trialId ?? null;
    const name = q.name ?? null;
    const language = q.language ?? null;
    const [series, rows] = await Promise.all([
      this.list(q),
      this.prisma.$queryRaw<
        Array<{ trialId: string; name: string; language: string | null; step: number; value: number }>
      >`
        WITH s AS (
          SELECT ms."trialId", ms."name", ms."language",
                 GREATEST(ms."firstStep", ${since}::int + 1) AS lo, ms."lastStep" AS hi
          FROM "MetricSeries" ms JOIN "Trial" t ON t."id" = ms."trialId"
          WHERE t."runId" = ${q.runId}::uuid
            AND (${trialId}::uuid IS NULL OR ms."trialId" = ${trialId}::uuid)
            AND (${name}::text IS NULL OR ms."name" = ${name}::text)
            AND (${language}::text IS NULL OR ms."language" = ${language}::text)
        ), b AS (
          SELECT s."trialId", s."name", s."language",
                 s.lo + floor(i::float8 * (s.hi - s.lo + 1) / ${q.points}::int)::int AS blo,
                 s.lo + floor((i + 1)::float8 * (s.hi - s.lo + 1) / ${q.points}::int)::int AS bhi
          FROM s CROSS JOIN generate_series(0, ${q.points}::int - 1) AS i
          WHERE s.hi >= s.lo
        )
        SELECT b."trialId"::text AS "trialId", b."name", b."language", m."step", m."value"
        FROM b CROSS JOIN LATERAL (
          SELECT m."step", m."value" FROM "Metric" m
          WHERE m."trialId" = b."trialId" AND m."name" = b."name"
            AND m."language" IS NOT DISTINCT FROM b."language"
            AND m."step" >= b.blo AND m."step" < b.bhi
          ORDER BY m."step" DESC
          LIMIT 1
        ) m
        WHERE b.bhi > b.blo
        ORDER BY b."trialId", b."name", b."language", m."step"`,
    ]);
    const key = (s: { trialId: string; name: string; language: string | null }) =>
      `${s.trialId}\u0000${s.name}\u0000${s.language ?? '\u0001'}`;
    const out = new Map<string, DownsampledSeries>(
      series.map((s) => [key(s), { ...s, steps: [], values: [] }]),
    );
    for (const r of rows) {
      const s = out.get(key(r));
      if (!s) continue; // a series created between the two queries
      s.steps.push(r.step);
      s.values.push(r.value);
    }
    return [...out.values()];
  }
}
