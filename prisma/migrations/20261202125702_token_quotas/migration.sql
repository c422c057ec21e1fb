-- Per-token quotas (issue 16 item 2); null = the deployment's default.
ALTER TABLE "ApiToken" ADD COLUMN     "maxActiveTrials" INTEGER,
ADD COLUMN     "maxRankSteps" BIGINT,
ADD COLUMN     "rateLimitPerMinute" INTEGER;
