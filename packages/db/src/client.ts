import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
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
    // Short OLTP queries only: JIT compilation (when a plan's estimated cost crosses jit_above_cost) costs more
    // than it saves.
    options: '-c jit=off',
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
  /** Size of the pg pool for hot reads (default 4). */
  readPoolSize?: number;
}

export type { PrismaClient };

/**
 * A small pg pool beside Prisma for the hottest reads (metric series), where
 * Prisma's processing of raw results costs more than the query, with JIT off.
 * Idle-client errors (Postgres restarting) are absorbed; the next query
 * reconnects.
 */
export function createReadPool(
  databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
  opts: DbOptions = {},
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.readPoolSize ?? 4,
    // These queries are index probes whose estimated cost (a per-series subplan) crosses jit_above_cost;
    // JIT compiling them took 15-20 ms, several times the query itself.
    options: '-c jit=off',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? Number(process.env.MPO_DB_CONNECT_TIMEOUT_MS ?? 5_000),
  });
  pool.on('error', () => {});
  return pool;
}
