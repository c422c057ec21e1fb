-- AlterTable
ALTER TABLE "MetricSeries" ADD COLUMN     "sketchSteps" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
ADD COLUMN     "sketchStride" INTEGER NOT NULL DEFAULT 1,
ADD COLUMN     "sketchValues" TEXT[] DEFAULT ARRAY[]::TEXT[];


-- Hand edit (Prisma does not model functions or triggers).
-- metric_sketch: the last point of every floor(step / stride) bucket (values as text: float8's shortest exact
-- form, converted once when a row enters the sketch), the stride doubled from p_stride until at
-- most p_cap buckets remain. Thinning a sketch to a larger power-of-two stride gives the sketch of the same rows
-- at that stride, so merging two sketches at the larger stride (and doubling as needed) is exact.
CREATE FUNCTION "metric_sketch"(
  p_stride integer, p_steps integer[], p_values text[], p_cap integer,
  OUT sk_stride integer, OUT sk_steps integer[], OUT sk_values text[]
) LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  sk_stride := greatest(p_stride, 1);
  LOOP
    SELECT coalesce(array_agg(x.s ORDER BY x.s), '{}'), coalesce(array_agg(x.v ORDER BY x.s), '{}')
      INTO sk_steps, sk_values
    FROM (
      SELECT DISTINCT ON (u.s / sk_stride) u.s, u.v
      FROM unnest(p_steps, p_values) AS u(s, v)
      ORDER BY u.s / sk_stride, u.s DESC
    ) x;
    EXIT WHEN coalesce(array_length(sk_steps, 1), 0) <= p_cap;
    sk_stride := sk_stride * 2;
  END LOOP;
END
$$;

-- The catalog trigger now also merges each statement's new rows into the series' sketch (cap 1,024 buckets,
-- SKETCH_CAP in packages/db/src/series.ts). The ON CONFLICT update runs under the series row's lock, so
-- concurrent writers to one series merge one after the other.
CREATE OR REPLACE FUNCTION "metric_series_catalog"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "MetricSeries" AS ms
    ("trialId", "name", "language", "firstStep", "lastStep", "count", "sketchStride", "sketchSteps", "sketchValues")
  SELECT g."trialId", g."name", g."language", g.first, g.last, g.n, k.sk_stride, k.sk_steps, k.sk_values
  FROM (
    SELECT "trialId", "name", "language", min("step") AS first, max("step") AS last, count(*) AS n,
           array_agg("step") AS steps, array_agg("value"::text) AS vals
    FROM new_rows
    GROUP BY "trialId", "name", "language"
  ) g
  CROSS JOIN LATERAL "metric_sketch"(1, g.steps, g.vals, 1024) k
  ORDER BY g."trialId", g."name", g."language"
  ON CONFLICT ("trialId", "name", "language") DO UPDATE SET
    "firstStep" = least(ms."firstStep", EXCLUDED."firstStep"),
    "lastStep" = greatest(ms."lastStep", EXCLUDED."lastStep"),
    "count" = ms."count" + EXCLUDED."count",
    ("sketchStride", "sketchSteps", "sketchValues") = (
      SELECT m.sk_stride, m.sk_steps, m.sk_values
      FROM "metric_sketch"(
        greatest(ms."sketchStride", EXCLUDED."sketchStride"),
        ms."sketchSteps" || EXCLUDED."sketchSteps",
        ms."sketchValues" || EXCLUDED."sketchValues",
        1024
      ) m
    );
  RETURN NULL;
END
$$;

-- Backfill the sketches of series written before this migration.
UPDATE "MetricSeries" ms
SET ("sketchStride", "sketchSteps", "sketchValues") = (
  SELECT k.sk_stride, k.sk_steps, k.sk_values
  FROM (
    SELECT array_agg(m."step") AS steps, array_agg(m."value"::text) AS vals
    FROM "Metric" m
    WHERE m."trialId" = ms."trialId" AND m."name" = ms."name" AND m."language" IS NOT DISTINCT FROM ms."language"
  ) a
  CROSS JOIN LATERAL "metric_sketch"(1, a.steps, a.vals, 1024) k
);
