#!/usr/bin/env node
// The main job. Until the end-to-end demo lands (evaluation + testbed issue),
// this checks that the services answer and prints what the demo will run.
import { spawnSync } from 'node:child_process';

const check = (what, cmd, args, expect) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const good = r.status === 0 && (!expect || expect.test(r.stdout));
  process.stdout.write(
    `${good ? 'ok  ' : 'FAIL'} ${what}${good ? '' : `: ${(r.stderr || r.stdout).trim()}`}\n`,
  );
  return good;
};
const ok = [
  check('Postgres answers on 127.0.0.1:5432', 'pg_isready', ['-h', '127.0.0.1', '-p', '5432']),
  check('Redis answers on 127.0.0.1:6379', 'redis-cli', ['ping'], /PONG/),
  check(
    'Redis maxmemory-policy is noeviction',
    'redis-cli',
    ['config', 'get', 'maxmemory-policy'],
    /noeviction/,
  ),
].every(Boolean);
process.stdout.write(`
The demo will:
  1. start the API (npm run api) and a worker agent (npm run worker),
  2. submit through POST /runs an MPO sweep (grid over learning rate and beta)
     plus one DPO and one SimPO trial on builtin:tiny-multilingual,
  3. wait with progress shown, then print per-language reward gap and MultiJail
     attack success before/after, utility, and the dashboard URL.
`);
process.exit(ok ? 0 : 1);
