import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.js';

export const DEFAULT_DATABASE_URL = 'postgresql://root@127.0.0.1:5432/mpo';

/** A Prisma client over the pg driver adapter (no Rust query engine). */
export function createPrismaClient(
  databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
): PrismaClient {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: Number(process.env.MPO_DB_POOL ?? 10) });
  return new PrismaClient({ adapter });
}

export type { PrismaClient };
