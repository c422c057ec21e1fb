#!/usr/bin/env node
// Idempotent setup for a fresh machine: Debian packages (when root on Debian),
// npm dependencies, Prisma client, native addons and TypeScript builds, local
// services, and database migrations. Every step is skipped when already done.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.env.MPO_SETUP_QUIET === '1';
const log = (msg) => {
  if (!quiet) process.stderr.write(`[setup] ${msg}\n`);
};
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, {
    cwd: root,
    stdio: quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'],
    ...opts,
  });
  if (r.status !== 0) {
    throw new Error(`setup: \`${cmd} ${args.join(' ')}\` failed with exit code ${r.status}`);
  }
};
const ok = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

// chromium: the dashboard's browser tests (apps/api/test/dashboard.e2e.test.ts, driven by playwright-core).
// cmake, python3-torch: scripts/gpu-check.sh --dry-run (packages/engine/test/gpu-check.test.ts) builds the
// engine's C++ harness with CMake and runs the PyTorch side of its benchmark. libgloo-dev: gloo's headers for
// packages/allreduce's c10d addon (ProcessGroupGloo between hosts; Debian's libtorch has gloo built in).
export const DEBIAN_PACKAGES = [
  'libtorch-dev',
  'libopenblas0-pthread',
  'chromium',
  'cmake',
  'python3-torch',
  'libgloo-dev',
];
export const DEFAULT_DATABASE_URL = 'postgresql://root@127.0.0.1:5432/mpo';
process.env.DATABASE_URL ??= DEFAULT_DATABASE_URL;
process.env.REDIS_URL ??= 'redis://127.0.0.1:6379';
process.env.TURBO_TELEMETRY_DISABLED = '1';
process.env.CHECKPOINT_DISABLE = '1';
process.env.PRISMA_HIDE_UPDATE_MESSAGE = '1';

function debianPackages() {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !existsSync('/etc/debian_version')) return;
  const extra = (process.env.MPO_EXTRA_DEBIAN_PACKAGES ?? '').split(/\s+/).filter(Boolean);
  const missing = [...DEBIAN_PACKAGES, ...extra].filter(
    (p) => !/install ok installed/.test(spawnSync('dpkg', ['-s', p], { encoding: 'utf8' }).stdout ?? ''),
  );
  if (missing.length === 0) return;
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
}

function npmDependencies() {
  const stamp = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs) return;
  log('installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

function services() {
  if (!ok('pg_isready', ['-h', '127.0.0.1', '-p', '5432', '-t', '3'])) {
    log('starting PostgreSQL');
    const version = execFileSync('ls', ['/etc/postgresql'], { encoding: 'utf8' }).trim().split('\n')[0];
    run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start']);
  }
  if (!ok('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'ping'])) {
    log('starting Redis');
    run('redis-server', [
      '--daemonize',
      'yes',
      '--bind',
      '127.0.0.1',
      '-::1',
      '--port',
      '6379',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      '/var/lib/redis',
      '--logfile',
      '/var/log/redis/ci.log',
    ]);
    for (let i = 0; i < 50 && !ok('redis-cli', ['ping']); i++) spawnSync('sleep', ['0.1']);
  }
}

function build() {
  log('generating Prisma client');
  run('npx', ['prisma', 'generate'], { stdio: quiet ? 'ignore' : ['ignore', 'ignore', 'inherit'] });
  log('building addons and packages (turbo run build)');
  run('npx', ['turbo', 'run', 'build', '--output-logs=errors-only', '--log-prefix=task']);
}

function migrate() {
  log(`applying migrations to ${process.env.DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}`);
  run('node', ['packages/db/dist/migrate-cli.js', '--create-database']);
}

const steps = { debianPackages, npmDependencies, services, build, migrate };
const only = process.argv.slice(2);
for (const [name, step] of Object.entries(steps)) {
  if (only.length === 0 || only.includes(name)) step();
}
if (!quiet && existsSync(join(root, 'package.json'))) {
  const { name } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  log(`${name}: ready`);
}
