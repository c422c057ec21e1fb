import { ArtifactRepository } from './artifacts.js';
import { createPrismaClient, createReadPool, type DbOptions, type PrismaClient } from './client.js';
import { GenerationRepository } from './generations.js';
import { MetricRepository } from './metrics.js';
import { OutboxRepository } from './outbox.js';
import { RunRepository } from './runs.js';
import { SeriesReader } from './series.js';
import { TokenRepository } from './tokens.js';

export * from './artifacts.js';
export * from './client.js';
export * from './errors.js';
export type { RunStatus, TrialStatus } from './generated/prisma/enums.js';
export * from './generations.js';
export * from './metrics.js';
export { ensureDatabase, MigrationError, migrate } from './migrate.js';
export * from './outbox.js';
export * from './runs.js';
export * from './series.js';
export * from './tokens.js';

/** The typed repositories apps use; nothing outside this package touches Prisma. */
export interface Db {
  runs: RunRepository;
  metrics: MetricRepository;
  artifacts: ArtifactRepository;
  /** Evaluation generations (prompt, response, verdict) behind attack-success rates. */
  generations: GenerationRepository;
  tokens: TokenRepository;
  outbox: OutboxRepository;
  /** Downsampled metric series for charts. */
  series: SeriesReader;
  /** Round-trips to Postgres (for readiness checks). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function createDb(databaseUrl?: string, opts: DbOptions = {}): Db {
  const prisma: PrismaClient = createPrismaClient(databaseUrl, opts);
  const pool = createReadPool(databaseUrl, opts);
  return {
    runs: new RunRepository(prisma, pool),
    metrics: new MetricRepository(prisma),
    artifacts: new ArtifactRepository(prisma),
    generations: new GenerationRepository(prisma),
    tokens: new TokenRepository(prisma, pool),
    outbox: new OutboxRepository(prisma),
    series: new SeriesReader(pool),
    ping: async () => {
      await prisma.$queryRaw`SELECT 1`;
    },
    close: async () => {
      await Promise.all([prisma.$disconnect(), pool.end()]);
    },
  };
}
