import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.js';

export const DEFAULT_DATABASE_URL = 'postgresql://root@127.0.0.1:5432/mpo';

/** A Prisma client over the pg driver adapter (no Rust query engine). */
export function createPrismaClient(
  databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
  opts: DbOptions = {},
): PrismaClient {
  const adapter = new PrismaPg({
    connectionString: databaseUrl,
    max: opts.poolSize ?? Number(process.env.MPO_DB_POOL ?? 10),
    // pg waits forever for a connection by default; a service must fail fast (and answer 503) instead.
    connectionTimeoutMillis: opts.connectTimeoutMs ?? Number(process.env.MPO_DB_CONNECT_TIMEOUT_MS ?? 5_000),
  });
  return new PrismaClient({ adapter });
}

export interface DbOptions {
  /** Pool size (default MPO_DB_POOL or 10). */
  poolSize?: number;
  /** How long to wait for a connection before failing (default MPO_DB_CONNECT_TIMEOUT_MS or 5000). */
  connectTimeoutMs?: number;
}

export type { PrismaClient };
