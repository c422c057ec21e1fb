// Applies prisma/migrations/*/migration.sql in name order, recording each in
// Prisma's own `_prisma_migrations` table so that `prisma migrate deploy` and
// `prisma migrate status` later see them as applied. We cannot use `migrate
// deploy` itself: with the pg driver adapter it fails on Postgres
// (prisma/orm#27403, "Column type 'name' could not be deserialized").

import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '@mpo/util';
import pg from 'pg';

export const DEFAULT_MIGRATIONS_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../../prisma/migrations',
);

// The exact DDL Prisma's schema engine uses for its bookkeeping table.
const MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`.replace(' UNSIGNED', '');

// Any constant works as long as every runner agrees; this one is "mpo-migrate".
const ADVISORY_LOCK_KEY = 0x6d706f6d;

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrateOptions {
  databaseUrl: string;
  migrationsDir?: string;
  log?: (msg: string) => void;
}

export interface MigrateResult {
  applied: string[];
  skipped: string[];
}

export class MigrationError extends Error {
  constructor(
    readonly migration: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`migration ${migration}: ${message}`, options);
    this.name = 'MigrationError';
  }
}

export function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): MigrationFile[] {
  if (!existsSync(dir)) throw new Error(`migrations directory not found: ${dir}`);
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const file = join(dir, name, 'migration.sql');
      if (!existsSync(file)) throw new MigrationError(name, `missing ${file}`);
      const sql = readFileSync(file, 'utf8');
      // Prisma's checksum is the sha256 of the file's bytes, hex-encoded.
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

interface AppliedRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

/** Applies pending migrations; idempotent, one transaction per migration. */
export async function migrate(opts: MigrateOptions): Promise<MigrateResult> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const migrations = readMigrations(opts.migrationsDir);
  const client = new pg.Client({ connectionString: opts.databaseUrl });
  await client.connect();
  const result: MigrateResult = { applied: [], skipped: [] };
  try {
    // Serialise concurrent runners (several workers starting at once).
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
    await client.query(MIGRATIONS_TABLE_DDL);
    const { rows } = await client.query<AppliedRow>(
      'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"',
    );
    const applied = new Map<string, AppliedRow>();
    for (const row of rows) {
      if (row.rolled_back_at !== null) continue;
      if (row.finished_at === null) {
        throw new MigrationError(
          row.migration_name,
          'recorded as started but never finished; fix the database by hand and delete its _prisma_migrations row',
        );
      }
      applied.set(row.migration_name, row);
    }
    for (const m of migrations) {
      const done = applied.get(m.name);
      if (done) {
        if (done.checksum !== m.checksum) {
          log(`warning: migration ${m.name} was edited after it was applied (checksum differs)`);
        }
        result.skipped.push(m.name);
        continue;
      }
      await applyOne(client, m);
      log(`applied migration ${m.name}`);
      result.applied.push(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => {});
    await client.end();
  }
  return result;
}

async function applyOne(client: pg.Client, m: MigrationFile): Promise<void> {
  try {
    await client.query('BEGIN');
    await client.query(m.sql);
    await client.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
       VALUES ($1, $2, $3, now(), now(), 1)`,
      [randomUUID(), m.checksum, m.name],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw new MigrationError(m.name, errorMessage(err), { cause: err });
  }
}

/** Creates the database named in `databaseUrl` when it does not exist yet. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`unsupported database name "${name}" in DATABASE_URL`);
  const admin = new pg.Client({ connectionString: new URL('/postgres', url).toString() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return false;
    await admin.query(`CREATE DATABASE "${name}"`);
    return true;
  } catch (err) {
    // Two processes racing to create it: the loser sees duplicate_database.
    if ((err as { code?: string }).code === '42P04') return false;
    throw err;
  } finally {
    await admin.end();
  }
}
