#!/usr/bin/env node
// The main job (`npm run demo`, after scripts/setup.mjs): starts the API and a worker agent, then runs
// `mpo reproduce --quick` against them: the paper's comparisons (MPO, the nine baselines, the ablations of
// MPO) submitted through the API as sweeps over seeds on the transfer testbed, with progress, then the report
// (mean ± sd over seeds; docs/results.md) printed and written under runs/demo-<time>/, and the dashboard URL.
// A step that fails stops the API and worker started here and names the step and its logs.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const work = join(root, 'runs', `demo-${stamp}`);
mkdirSync(work, { recursive: true });
const mpoBin = join(root, 'apps/cli/bin/mpo.js');
const token = `demo_${randomBytes(16).toString('hex')}`;
const prefix = `mpo-demo-${stamp}`;
const started = Date.now();
const children = [];
const say = (s) => process.stdout.write(`${s}\n`);
const elapsed = () => {
  const s = Math.round((Date.now() - started) / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
};

function freePort(preferred) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => {
      const any = createServer();
      any.listen(0, '127.0.0.1', () => {
        const { port } = any.address();
        any.close(() => resolve(port));
      });
    });
    srv.listen(preferred, '127.0.0.1', () => srv.close(() => resolve(preferred)));
  });
}

// The steps, in order; a failure names the one that was running and where its logs are.
const STEPS = [
  ['testbed model', 'mpo-testbed.log'],
  ['start the API', 'api.log'],
  ['start a worker agent', 'worker.log'],
  ['reproduce', 'mpo-reproduce.log'],
];
let current = -1;
function step(name) {
  current = STEPS.findIndex(([n]) => n === name);
}
async function fail(err) {
  if (shuttingDown) return;
  const [name, log] = STEPS[current] ?? ['setup', 'demo'];
  say(`\ndemo failed at step ${current + 1}/${STEPS.length} (${name}): ${err?.message ?? err}`);
  say(`logs: ${join(work, log)} (all logs in ${work})`);
  await shutdown(1);
}

function start(name, script, env) {
  const log = createWriteStream(join(work, `${name}.log`));
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.on('exit', (code, sig) => {
    if (!shuttingDown)
      fail(new Error(`${name} exited unexpectedly (${sig ?? code}); see ${join(work, `${name}.log`)}`));
  });
  children.push(child);
  say(`[${elapsed()}] ${name} started (pid ${child.pid}, log ${join(work, `${name}.log`)})`);
  return child;
}

let shuttingDown = false;
async function shutdown(code) {
  shuttingDown = true;
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of running) c.kill('SIGTERM');
  // A child that ignores SIGTERM for 15 s (e.g. a worker waiting on a trial) is killed.
  const hard = setTimeout(() => {
    for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, 15_000);
  await Promise.all(running.map((c) => new Promise((r) => c.once('exit', r))));
  clearTimeout(hard);
  process.exit(code);
}
process.on('SIGINT', () => shutdown(130));
process.on('SIGTERM', () => shutdown(143));
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

/** Runs `mpo ...args`; its stderr goes to runs/demo-<time>/mpo-<command>.log. */
function runMpo(args, opts = {}) {
  const r = spawnSync(process.execPath, [mpoBin, ...args], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, ...opts.env },
  });
  writeFileSync(
    join(work, `mpo-${args[0]}.log`),
    `$ mpo ${args.join(' ')}\n${r.stderr ?? ''}${r.error ?? ''}`,
  );
  if (r.status !== 0) {
    const tail = (r.stderr ?? '').trim().split('\n').slice(-8).join('\n');
    throw new Error(`mpo ${args.join(' ')} failed (${r.status ?? r.signal}):\n${tail}`);
  }
  return r.stdout;
}

/**
 * Runs `mpo ...args` without blocking the demo: stderr goes to runs/demo-<time>/mpo-<command>.log, its
 * progress lines are shown every 30 s and its other lines as they come; a non-zero exit fails the step.
 */
function streamMpo(args, env) {
  return new Promise((resolve, reject) => {
    const log = createWriteStream(join(work, `mpo-${args[0]}.log`));
    log.write(`$ mpo ${args.join(' ')}\n`);
    const child = spawn(process.execPath, [mpoBin, ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let tail = [];
    let shown = 0;
    let pending = '';
    child.stdout.pipe(log, { end: false });
    child.stderr.on('data', (b) => {
      log.write(b);
      pending += b;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const l of lines) {
        tail = [...tail, l].slice(-8);
        let p = null;
        try {
          p = l.startsWith('{') ? JSON.parse(l) : null;
        } catch {}
        if (p?.type !== 'progress') say(`  ${l}`);
        else if (Date.now() - shown > 30_000) {
          shown = Date.now();
          say(
            `[${elapsed()}] ${p.phase}: ${p.done}/${p.total}${p.etaSeconds ? `, about ${Math.ceil(p.etaSeconds / 60)} min left` : ''}`,
          );
        }
      }
    });
    child.on('exit', (code, sig) => {
      log.end();
      if (code === 0) resolve(true);
      else reject(new Error(`mpo ${args.join(' ')} failed (${sig ?? code}):\n${tail.join('\n')}`));
    });
  });
}

let base;
try {
  // 1. The transfer testbed (rebuilt here when missing: about 7 minutes on one thread; docs/testbed.md).
  step('testbed model');
  const testbedDir = process.env.MPO_TRANSFER_TESTBED_DIR ?? join(root, 'models/tiny-multilingual-transfer');
  if (!existsSync(join(testbedDir, 'config.json'))) {
    say(
      'building the transfer testbed (mpo testbed build --testbed tiny-multilingual-transfer --seed 1 --init-seed 2 --threads 1), about 7 minutes...',
    );
    // The committed checkpoint's own rebuild line (its testbed.json): the same bytes.
    runMpo([
      'testbed',
      'build',
      '--testbed',
      'tiny-multilingual-transfer',
      '--seed',
      '1',
      '--init-seed',
      '2',
      '--threads',
      '1',
    ]);
  }
  // 2. The API. Builtin models and data resolve inside the repository (datasets/, models/);
  // spec paths resolve under these roots.
  step('start the API');
  const port = await freePort(Number(process.env.PORT ?? 8080));
  base = `http://127.0.0.1:${port}`;
  const common = {
    MPO_QUEUE_PREFIX: prefix,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    MPO_MODEL_ROOT: join(root, 'models'),
    MPO_DATA_ROOT: join(root, 'datasets'),
  };
  start('api', join(root, 'apps/api/dist/main.js'), {
    ...common,
    PORT: String(port),
    HOST: '127.0.0.1',
    MPO_ADMIN_TOKEN: token,
  });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    if (i > 100) throw new Error(`the API did not come up; see ${work}/api.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
  say(`[${elapsed()}] API on ${base} (queue prefix ${prefix}); logs in ${work}`);

  // 3. A worker agent with the machine's two cores as CPU slots (idle until the runs arrive).
  step('start a worker agent');
  start('worker', join(root, 'apps/worker/dist/main.js'), {
    ...common,
    MPO_DEVICES: process.env.MPO_DEVICES ?? 'cpu:2',
    MPO_ARTIFACT_ROOT: join(work, 'artifacts'),
  });

  // 4. The paper's comparisons through the API, over seeds; the report is what the command printed.
  step('reproduce');
  say(
    `[${elapsed()}] mpo reproduce --quick (progress every 30 s; full log ${join(work, 'mpo-reproduce.log')})`,
  );
  await streamMpo(['reproduce', '--quick', '--out', join(work, 'report.md')], {
    MPO_API_URL: base,
    MPO_TOKEN: token,
  });
  say(`\n${readFileSync(join(work, 'report.md'), 'utf8')}`);
  say(`[${elapsed()}] report: ${join(work, 'report.md')}`);
  writeFileSync(join(work, 'token.txt'), `${token}\n`);
  say(
    `dashboard: ${base}/   (sign in with the token in ${join(work, 'token.txt')}; API docs at ${base}/docs)`,
  );
  say(
    `the API and worker are stopped now; \`npm run api\` and \`npm run worker\` start them for good (see README).`,
  );
} catch (err) {
  await fail(err);
}
await shutdown(0);
