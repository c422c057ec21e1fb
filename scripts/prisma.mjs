#!/usr/bin/env node
// Runs the Prisma CLI offline. Prisma 6.19 falls back to downloading the Rust
// query engine when it cannot resolve the datasource (an unset DATABASE_URL),
// so we always give it one; with engineType "client" nothing else is fetched.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = {
  ...process.env,
  DATABASE_URL: process.env.DATABASE_URL ?? 'postgresql://root@127.0.0.1:5432/postgres',
  CHECKPOINT_DISABLE: '1',
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1',
};
const cli = join(root, 'node_modules', 'prisma', 'build', 'index.js');
const r = spawnSync(process.execPath, [cli, ...process.argv.slice(2)], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
