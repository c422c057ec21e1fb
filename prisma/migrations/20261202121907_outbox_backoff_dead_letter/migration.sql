-- AlterTable
ALTER TABLE "Outbox" ADD COLUMN     "deadAt" TIMESTAMP(3),
ADD COLUMN     "nextAttemptAt" TIMESTAMP(3);

