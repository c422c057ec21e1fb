-- CreateTable
CREATE TABLE "Generation" (
    "id" UUID NOT NULL,
    "runId" UUID NOT NULL,
    "trialId" UUID NOT NULL,
    "checkpointId" UUID,
    "evaluationId" UUID,
    "benchmark" TEXT NOT NULL,
    "language" TEXT NOT NULL,
    "promptId" TEXT NOT NULL,
    "prompt" TEXT NOT NULL,
    "response" TEXT NOT NULL,
    "verdict" TEXT NOT NULL,
    "reason" TEXT,
    "judge" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Generation_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "Generation_runId_language_verdict_idx" ON "Generation"("runId", "language", "verdict");

-- CreateIndex
CREATE INDEX "Generation_trialId_benchmark_language_verdict_idx" ON "Generation"("trialId", "benchmark", "language", "verdict");

-- AddForeignKey
ALTER TABLE "Generation" ADD CONSTRAINT "Generation_trialId_fkey" FOREIGN KEY ("trialId") REFERENCES "Trial"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Generation" ADD CONSTRAINT "Generation_evaluationId_fkey" FOREIGN KEY ("evaluationId") REFERENCES "Evaluation"("id") ON DELETE SET NULL ON UPDATE CASCADE;


-- Hand-added: the judge's three labels only (Prisma's schema cannot state a CHECK).
ALTER TABLE "Generation" ADD CONSTRAINT "Generation_verdict_check" CHECK ("verdict" IN ('safe', 'unsafe', 'irrelevant'));
