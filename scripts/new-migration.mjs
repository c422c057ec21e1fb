#!/usr/bin/env node
// Generates the next migration offline. Each migration folder keeps a snapshot
// of the schema it produced (schema.prisma beside migration.sql); the next
// migration is `prisma migrate diff` from the latest snapshot to the current
// prisma/schema.prisma. (With a driver adapter configured, Prisma 6.19 refuses
// --from-url and --from-migrations, so the diff is datamodel to datamodel.)
// Usage: npm run db:migration -- <name>
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const name = (process.argv[2] ?? '').replace(/[^a-z0-9_]/gi, '_');
if (!name) {
  console.error('usage: npm run db:migration -- <name>');
  process.exit(2);
}
const migrationsDir = join(root, 'prisma', 'migrations');
const folders = readdirSync(migrationsDir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();
const last = folders.at(-1);
const from = last
  ? ['--from-schema-datamodel', join(migrationsDir, last, 'schema.prisma')]
  : ['--from-empty'];
if (last && !existsSync(from[1])) {
  console.error(`missing schema snapshot ${from[1]}`);
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  [
    join(root, 'scripts/prisma.mjs'),
    'migrate',
    'diff',
    ...from,
    '--to-schema-datamodel',
    'prisma/schema.prisma',
    '--script',
  ],
  { cwd: root, encoding: 'utf8' },
);
if (r.status !== 0) {
  console.error(`prisma migrate diff failed:\n${r.stderr}`);
  process.exit(1);
}
if (/^-- This is an empty migration\.?\s*$/m.test(r.stdout) || r.stdout.trim() === '') {
  console.log('schema and migrations agree: no migration written');
  process.exit(0);
}
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const dir = join(migrationsDir, `${stamp}_${name}`);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'migration.sql'), r.stdout);
copyFileSync(join(root, 'prisma', 'schema.prisma'), join(dir, 'schema.prisma'));
console.log(`wrote ${dir}/migration.sql (review it, then npm run db:migrate)`);
