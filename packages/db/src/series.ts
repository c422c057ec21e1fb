// Reading metric series for charts: every series of a run (or a filtered
// few), each cut to at most `points` points without scanning the series.
//
// Each series has a catalog row (MetricSeries, kept by a trigger on Metric
// inserts) holding its step range, row count and a sketch: the LAST point of
// every floor(step / stride) bucket, for the smallest power-of-two stride that
// leaves at most SKETCH_CAP buckets. A request is answered from
//   - the rows themselves when the requested range (since, lastStep] spans at
//     most `points` steps (live polling: the newest points, exactly), or
//   - the sketch otherwise, thinned in memory to the smallest power-of-two
//     multiple of its stride that leaves at most `points` buckets.
// Either way each point returned is a real (step, value) row, the last of its
// bucket, never an average; the cost does not grow with the series length.
import type pg from 'pg';

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
  /** At most this many points come back for each series (1..MAX_POINTS). */
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
  /** Bucket width in steps of the points returned (1: every row in the range). */
  stride: number;
  steps: number[];
  values: number[];
}

/** Buckets a series sketch keeps at most (the same constant is in the metric_series_sketch migration). */
export const SKETCH_CAP = 1024;
/** Points per series a request may ask for. */
export const MAX_POINTS = SKETCH_CAP;

interface CatalogRow extends SeriesInfo {
  sketchStride: number;
  /** Comma-separated (see parseNumbers); null when not asked for. */
  /** "steps;values" of the sketch, when the range is too long to send whole. */
  sketch: string | null;
  /** "steps;values" of the rows themselves, when the range is short enough. */
  exact: string | null;
}

/**
 * Numbers from Postgres's array_to_string(…, ','). Arrays travel as one text
 * column: Prisma's per-element handling of float8[] costs more than the query.
 */
function parseNumbers(s: string | null): number[] {
  if (!s) return [];
  return s.split(',').map(Number);
}

/**
 * The last point of every floor(step / stride) bucket among the points with
 * step > since, for the smallest power-of-two multiple of `stride` that
 * leaves at most `points` buckets. `steps` must be ascending; `values` may
 * still be text (only the kept ones are converted).
 */
export function thinSketch(
  steps: readonly number[],
  values: ReadonlyArray<number | string>,
  stride: number,
  since: number,
  points: number,
): { stride: number; steps: number[]; values: number[] } {
  let first = 0;
  while (first < steps.length && steps[first]! <= since) first++;
  const buckets = (t: number) => {
    let n = 0;
    let prev = Number.NaN;
    for (let i = first; i < steps.length; i++) {
      const b = Math.floor(steps[i]! / t);
      if (b !== prev) n++;
      prev = b;
    }
    return n;
  };
  let t = Math.max(1, stride);
  while (buckets(t) > points) t *= 2;
  const outSteps: number[] = [];
  const outValues: number[] = [];
  for (let i = first; i < steps.length; i++) {
    const next = steps[i + 1];
    // Keep the last point of each bucket: the next point is in another bucket (or there is none).
    if (next === undefined || Math.floor(next / t) !== Math.floor(steps[i]! / t)) {
      outSteps.push(steps[i]!);
      outValues.push(Number(values[i]!));
    }
  }
  return { stride: t, steps: outSteps, values: outValues };
}

/**
 * Reads series over a plain pg pool, not Prisma: these are the hottest reads
 * (charts poll them), and Prisma's handling of a raw result costs several
 * times the query itself (measured: 45 ms vs 6 ms for one run's 20 sketches).
 */
export class SeriesReader {
  constructor(private readonly pool: pg.Pool) {}

  /** The series of a run that match the filters, ordered by trial index, name, language. */
  async list(q: Omit<SeriesQuery, 'points' | 'sinceStep'>): Promise<SeriesInfo[]> {
    return (await this.catalog(q, null)).map(({ sketchStride: _a, sketch: _b, exact: _c, ...info }) => info);
  }

  /** Every matching series, each cut to at most `points` points (the last point of each bucket). */
  async downsample(q: SeriesQuery): Promise<DownsampledSeries[]> {
    if (!Number.isInteger(q.points) || q.points < 1 || q.points > MAX_POINTS)
      throw new RangeError(`points must be an integer in 1..${MAX_POINTS}, got ${q.points}`);
    const since = q.sinceStep ?? -1;
    return (await this.catalog(q, { since, points: q.points })).map((r) => {
      const { sketchStride, sketch, exact, ...info } = r;
      if (exact !== null) {
        const [steps = '', values = ''] = exact.split(';');
        return { ...info, stride: 1, steps: parseNumbers(steps), values: parseNumbers(values) };
      }
      const lo = Math.max(info.firstStep, since + 1);
      if (info.lastStep < lo) return { ...info, stride: 1, steps: [], values: [] };
      const [steps = '', values = ''] = (sketch ?? '').split(';');
      // Only the kept values are converted from text.
      return {
        ...info,
        ...thinSketch(parseNumbers(steps), values ? values.split(',') : [], sketchStride, since, q.points),
      };
    });
  }

  /**
   * One round trip: the catalog rows, and with `cut` either the rows themselves
   * (when (since, lastStep] spans at most `points` steps: one index range scan,
   * skipped by a one-time filter otherwise) or the sketch to thin in memory.
   */
  private async catalog(
    q: Omit<SeriesQuery, 'points' | 'sinceStep'>,
    cut: { since: number; points: number } | null,
  ): Promise<CatalogRow[]> {
    const { rows } = await this.pool.query<Omit<CatalogRow, 'count'> & { count: string }>(CATALOG_SQL, [
      q.runId,
      q.trialId ?? null,
      q.name ?? null,
      q.language ?? null,
      cut !== null,
      cut?.since ?? -1,
      cut?.points ?? 0,
    ]);
    // Sorted here rather than in SQL: a sort node would carry the sketches along.
    return rows
      .map((r) => ({ ...r, count: Number(r.count) }))
      .sort(
        (a, b) =>
          a.trialIndex - b.trialIndex ||
          (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
          (a.language === b.language
            ? 0
            : a.language === null
              ? -1
              : b.language === null
                ? 1
                : a.language < b.language
                  ? -1
                  : 1),
      );
  }
}

// $1 run, $2 trial, $3 name, $4 language, $5 cut?, $6 since, $7 points. The exact rows come from a scalar
// subquery inside CASE, which Postgres evaluates only for the series that take that branch (a lateral join
// would scan every series' rows and filter afterwards). Arrays travel as text ("steps;values").
const CATALOG_SQL = `
  SELECT ms."trialId"::text AS "trialId", t."index" AS "trialIndex", ms."name", ms."language",
         ms."firstStep", ms."lastStep", ms."count", ms."sketchStride",
         CASE WHEN $5::boolean AND ms."lastStep" - GREATEST(ms."firstStep", $6::int + 1) + 1 > $7::int
              THEN array_to_string(ms."sketchSteps", ',') || ';' || array_to_string(ms."sketchValues", ',')
         END AS "sketch",
         CASE WHEN $5::boolean AND ms."lastStep" - GREATEST(ms."firstStep", $6::int + 1) + 1 <= $7::int THEN (
           SELECT coalesce(array_to_string(array_agg(m."step" ORDER BY m."step"), ','), '') || ';' ||
                  coalesce(array_to_string(array_agg(m."value" ORDER BY m."step"), ','), '')
           FROM "Metric" m
           WHERE m."trialId" = ms."trialId" AND m."name" = ms."name"
             AND m."language" IS NOT DISTINCT FROM ms."language" AND m."step" > $6::int
         ) END AS "exact"
  FROM "MetricSeries" ms JOIN "Trial" t ON t."id" = ms."trialId"
  WHERE t."runId" = $1::uuid
    AND ($2::uuid IS NULL OR ms."trialId" = $2::uuid)
    AND ($3::text IS NULL OR ms."name" = $3::text)
    AND ($4::text IS NULL OR ms."language" = $4::text)`;
