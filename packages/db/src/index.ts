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
  /**
   * Ends both pools, waiting at most `timeoutMs` (default MPO_DB_CLOSE_TIMEOUT_MS or 5000): after a
   * connection was cut mid-query, pg's pool.end() waits for a client that is never released, and a
   * process shutting down must not hang on it. Returns whether the pools ended in time.
   */
  close(timeoutMs?: number): Promise<boolean>;
}

/** Waits for `p` at most `ms`; true when it settled in time (a rejection counts as settled). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function createDb(databaseUrl?: string, opts: DbOptions = {}): Db {
  const prisma: PrismaClient = createPrismaClient(databaseUrl, opts);
  const pool = createReadPool(databaseUrl, opts);
  return {
    runs: new RunRepository(prisma, pool),
    metrics: new MetricRepository(prisma, pool),
    artifacts: new ArtifactRepository(prisma),
    generations: new GenerationRepository(prisma),
    tokens: new TokenRepository(prisma, pool),
    outbox: new OutboxRepository(prisma),
    series: new SeriesReader(pool),
    ping: async () => {
      await prisma.$queryRaw`SELECT 1`;
    },
    close: (timeoutMs = Number(process.env.MPO_DB_CLOSE_TIMEOUT_MS ?? 5_000)) =>
      settlesWithin(Promise.all([prisma.$disconnect(), pool.end()]), timeoutMs),
  };
}
