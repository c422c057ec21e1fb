#!/usr/bin/env node
// `npm run db:migrate`: applies pending migrations to DATABASE_URL.
// --create-database creates the database first when missing.
import { errorMessage } from '@mpo/util';
import { ensureDatabase, migrate } from './migrate.js';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  process.stderr.write('db:migrate: DATABASE_URL is not set (e.g. postgresql://root@127.0.0.1:5432/mpo)\n');
  process.exit(2);
}
try {
  if (process.argv.includes('--create-database') && (await ensureDatabase(databaseUrl))) {
    process.stderr.write(`created database ${new URL(databaseUrl).pathname.slice(1)}\n`);
  }
  const { applied, skipped } = await migrate({ databaseUrl });
  process.stderr.write(`migrations: ${applied.length} applied, ${skipped.length} already applied\n`);
} catch (err) {
  process.stderr.write(`db:migrate failed: ${errorMessage(err)}\n`);
  process.exit(1);
}
