-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "rankSteps" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "trialCount" INTEGER NOT NULL DEFAULT 0;


-- Runs created before lazily created trials have every trial's row.
UPDATE "Run" r SET "trialCount" = (SELECT count(*) FROM "Trial" t WHERE t."runId" = r."id");
