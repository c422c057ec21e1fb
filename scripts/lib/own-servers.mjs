// Postgres and Redis servers of a test's own, on free ports, for outages that
// must never touch the shared servers other suites use (stopping, pausing,
// killing them). Used by apps/worker/test/postgres-outage.test.ts and
// scripts/chaos.mjs. Postgres: a fresh cluster (initdb, trust auth on
// 127.0.0.1 only) in a temporary folder; as root it runs as the `postgres`
// user, since postgres refuses to run as root.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** The folder of the Postgres server binaries (PG_BIN, else the newest /usr/lib/postgresql/N/bin, else PATH). */
export function postgresBin() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin/pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return join(base, versions[0], 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v pg_ctl'], { encoding: 'utf8' });
  if (which.status === 0) return join(which.stdout.trim(), '..');
  return null;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function runAsOwner(bin, args) {
  const cmd = asRoot ? 'su' : bin;
  const argv = asRoot ? ['postgres', '-s', '/bin/sh', '-c', [bin, ...args].map(shellQuote).join(' ')] : args;
  return execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
}

const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/**
 * A Postgres cluster of our own: `url` (database `mpo`, created), `stop()`
 * (fast shutdown: what an outage looks like to clients), `start()` again,
 * `destroy()` (stop and delete the folder).
 */
export async function ownPostgres({ tag = 'pg' } = {}) {
  const bin = postgresBin();
  if (!bin) throw new Error('no Postgres server binaries (set PG_BIN to the folder holding pg_ctl)');
  const dir = mkdtempSync(join(tmpdir(), `mpo-${tag}-`));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const sockets = join(dir, 'sock');
  mkdirSync(sockets);
  chmodSync(sockets, 0o777);
  const port = await freePort();
  const user = asRoot ? 'root' : process.env.USER || 'postgres';
  runAsOwner(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', user, '--no-sync']);
  const ctl = (...args) => runAsOwner(join(bin, 'pg_ctl'), ['-D', data, ...args]);
  const start = () =>
    ctl(
      '-w',
      '-l',
      join(dir, 'server.log'),
      '-o',
      `-p ${port} -k ${sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
      'start',
    );
  const stop = (mode = 'fast') => ctl('-w', '-m', mode, 'stop');
  start();
  const url = `postgresql://${user}@127.0.0.1:${port}/mpo`;
  const admin = `postgresql://${user}@127.0.0.1:${port}/postgres`;
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query('CREATE DATABASE mpo');
  await c.end();
  return {
    url,
    port,
    dir,
    start,
    stop,
    running: () =>
      spawnSync('sh', ['-c', `test -f ${shellQuote(join(data, 'postmaster.pid'))}`]).status === 0,
    destroy() {
      try {
        stop('immediate');
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server of our own (no persistence): `pause(ms)` (CLIENT PAUSE), `kill()`, `stop()`. */
export async function ownRedis({ appendOnly = false, dir } = {}) {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', ''];
  args.push('--appendonly', appendOnly ? 'yes' : 'no');
  if (dir) args.push('--dir', dir);
  const proc = spawn('redis-server', args, { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  const probe = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  probe.on('error', () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    if ((await probe.ping().catch(() => null)) === 'PONG') break;
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer`);
    await sleep(50);
  }
  return {
    url,
    port,
    proc,
    pause: (ms) => probe.call('CLIENT', 'PAUSE', String(ms), 'ALL'),
    async stop() {
      probe.disconnect();
      proc.kill('SIGKILL');
      if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
    },
  };
}
