-- A duplicated eval job (BullMQ at-least-once delivery, a retried attempt) must not
-- store a result twice. Keep the first row of each result already duplicated, then
-- index. NULLS NOT DISTINCT (PostgreSQL 15): rows without a checkpoint collide too.
DELETE FROM "Evaluation" a
  USING "Evaluation" b
  WHERE a."trialId" = b."trialId"
    AND a."checkpointId" IS NOT DISTINCT FROM b."checkpointId"
    AND a."benchmark" = b."benchmark"
    AND a."language" = b."language"
    AND a."metric" = b."metric"
    AND (a."createdAt", a."id") > (b."createdAt", b."id");

-- CreateIndex
CREATE UNIQUE INDEX "Evaluation_result_key" ON "Evaluation"("trialId", "checkpointId", "benchmark", "language", "metric") NULLS NOT DISTINCT;
