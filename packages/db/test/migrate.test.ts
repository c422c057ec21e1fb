import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError, migrate, readMigrations } from '../src/migrate.js';
import { query, scratchDatabase } from './helpers.js';

const repoRoot = resolve(import.meta.dirname, '../../..');
const quiet = () => {};

describe('migration runner', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  beforeAll(async () => {
    db = await scratchDatabase('migrate');
  });
  afterAll(async () => db.drop());

  it('applies every migration once and records it the way Prisma does', async () => {
    const first = await migrate({ databaseUrl: db.url, log: quiet });
    const names = readMigrations().map((m) => m.name);
    expect(first.applied).toEqual(names);
    const second = await migrate({ databaseUrl: db.url, log: quiet });
    expect(second).toEqual({ applied: [], skipped: names });

    const rows = await query<{ migration_name: string; checksum: string; applied_steps_count: number }>(
      db.url,
      'SELECT migration_name, checksum, applied_steps_count, finished_at FROM "_prisma_migrations" ORDER BY migration_name',
    );
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    expect(rows.map((r) => r.checksum)).toEqual(readMigrations().map((m) => m.checksum));
    expect(rows.every((r) => r.applied_steps_count === 1)).toBe(true);
    const tables = await query<{ tablename: string }>(
      db.url,
      "SELECT tablename FROM pg_tables WHERE schemaname='public'",
    );
    expect(tables.map((t) => t.tablename)).toEqual(
      expect.arrayContaining(['Run', 'Trial', 'Metric', 'Checkpoint', 'Evaluation', 'ApiToken', 'Outbox']),
    );
  });

  it("leaves Prisma's own migrate status satisfied", () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/prisma.mjs'), 'migrate', 'status'], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: db.url },
      encoding: 'utf8',
    });
    expect(r.stdout + r.stderr).toMatch(/Database schema is up to date/);
    expect(r.status).toBe(0);
  });

  it('runs concurrent runners safely (advisory lock)', async () => {
    const other = await scratchDatabase('migrate_race');
    try {
      const results = await Promise.all([1, 2, 3].map(() => migrate({ databaseUrl: other.url, log: quiet })));
      const appliedCounts = results.map((r) => r.applied.length).sort();
      expect(appliedCounts).toEqual([0, 0, readMigrations().length]);
    } finally {
      await other.drop();
    }
  });
});

describe('a failing migration', () => {
  it('is named in the error, rolled back, and not recorded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mpo-migrations-'));
    mkdirSync(join(dir, '001_good'));
    writeFileSync(join(dir, '001_good', 'migration.sql'), 'CREATE TABLE good (id int);');
    mkdirSync(join(dir, '002_bad'));
    writeFileSync(
      join(dir, '002_bad', 'migration.sql'),
      'CREATE TABLE half (id int);\nSELECT * FROM no_such_table;',
    );
    const db = await scratchDatabase('migrate_fail');
    try {
      const err = await migrate({ databaseUrl: db.url, migrationsDir: dir, log: quiet }).catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.migration).toBe('002_bad');
      expect(err.message).toMatch(/002_bad.*no_such_table/);
      const tables = await query<{ tablename: string }>(
        db.url,
        "SELECT tablename FROM pg_tables WHERE schemaname='public'",
      );
      const names = tables.map((t) => t.tablename).sort();
      expect(names).toEqual(['_prisma_migrations', 'good']); // `half` was rolled back with its migration
      const rows = await query<{ migration_name: string }>(
        db.url,
        'SELECT migration_name FROM "_prisma_migrations"',
      );
      expect(rows.map((r) => r.migration_name)).toEqual(['001_good']);
    } finally {
      await db.drop();
    }
  });
});
