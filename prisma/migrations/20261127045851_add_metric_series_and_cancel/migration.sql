-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "cancelRequestedAt" TIMESTAMP(3);

-- CreateTable
CREATE TABLE "MetricSeries" (
    "id" BIGSERIAL NOT NULL,
    "trialId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "language" TEXT,
    "firstStep" INTEGER NOT NULL,
    "lastStep" INTEGER NOT NULL,
    "count" BIGINT NOT NULL,

    CONSTRAINT "MetricSeries_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
-- Hand edit: NULLS NOT DISTINCT (Postgres 15+), so a language-less series has one row, and ON CONFLICT finds it.
CREATE UNIQUE INDEX "MetricSeries_key" ON "MetricSeries"("trialId", "name", "language") NULLS NOT DISTINCT;

-- AddForeignKey
ALTER TABLE "MetricSeries" ADD CONSTRAINT "MetricSeries_trialId_fkey" FOREIGN KEY ("trialId") REFERENCES "Trial"("id") ON DELETE CASCADE ON UPDATE CASCADE;


-- Hand edit (Prisma does not model triggers): keep MetricSeries in step with Metric inserts. Statement-level with
-- a transition table, so a 5,000-row batch costs one grouped upsert; rows skipped by ON CONFLICT DO NOTHING
-- (re-delivered metrics) are not in the transition table and are not counted. ORDER BY keeps the lock order the
-- same across concurrent writers.
CREATE FUNCTION "metric_series_catalog"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "MetricSeries" ("trialId", "name", "language", "firstStep", "lastStep", "count")
  SELECT "trialId", "name", "language", min("step"), max("step"), count(*)
  FROM new_rows
  GROUP BY "trialId", "name", "language"
  ORDER BY "trialId", "name", "language"
  ON CONFLICT ("trialId", "name", "language") DO UPDATE SET
    "firstStep" = least("MetricSeries"."firstStep", EXCLUDED."firstStep"),
    "lastStep" = greatest("MetricSeries"."lastStep", EXCLUDED."lastStep"),
    "count" = "MetricSeries"."count" + EXCLUDED."count";
  RETURN NULL;
END
$$;

CREATE TRIGGER "Metric_series_catalog"
AFTER INSERT ON "Metric"
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION "metric_series_catalog"();

-- Backfill the catalog from metrics written before this migration.
INSERT INTO "MetricSeries" ("trialId", "name", "language", "firstStep", "lastStep", "count")
SELECT "trialId", "name", "language", min("step"), max("step"), count(*)
FROM "Metric"
GROUP BY "trialId", "name", "language";
