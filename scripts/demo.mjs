#!/usr/bin/env node
// The main job (`npm run demo`, after scripts/setup.mjs): starts the API and a
// worker agent, submits through the API an MPO sweep (grid over learning rate
// and β), an MPO ablation without the retain term, and one DPO and one SimPO
// trial on the builtin testbed, shows progress, then prints per-language
// reward gap and MultiJail attack success before/after, utility, the report
// and the dashboard URL. Everything it writes goes under runs/demo-<time>/.
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
const tty = process.stdout.isTTY === true;
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
  ['evaluate the initial model', 'mpo-eval.log'],
  ['submit the runs', 'api.log'],
  ['train and evaluate', 'worker.log'],
  ['results', 'api.log'],
  ['report', 'mpo-report.log'],
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

async function api(method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${JSON.stringify(data)}`);
  return data;
}

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

let base;
try {
  // 1. The testbed model (committed; rebuilt here only if missing).
  step('testbed model');
  if (!existsSync(join(root, 'models/tiny-multilingual/config.json'))) {
    say('building the testbed model (mpo testbed build --seed 1), a few minutes...');
    runMpo(['testbed', 'build', '--seed', '1']);
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

  // 4. The initial model's evaluation: the "before" of every table.
  step('evaluate the initial model');
  const evalArgs = [
    '--benchmarks',
    'reward-gap,multijail,utility',
    '--languages',
    'en,zh,ko,ar,bn,sw',
    '--max-prompts',
    '20',
    '--threads',
    '2',
    '--json',
  ];
  say(`[${elapsed()}] evaluating the initial testbed model (reward gap, MultiJail, utility)...`);
  const baseline = runMpo(['eval', '--model', 'builtin:tiny-multilingual', ...evalArgs])
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((l) => l.type === 'result')
    .map(({ type, ...r }) => r);
  writeFileSync(join(work, 'baseline.json'), `${JSON.stringify(baseline, null, 2)}\n`);

  // 5. Submit the runs through the API.
  step('submit the runs');
  const specs = [
    ['mpo-sweep.json', 'MPO'],
    ['mpo-no-retain.json', 'MPO w/o Retain'],
    ['dpo.json', 'DPO'],
    ['simpo.json', 'SimPO'],
  ];
  const runs = [];
  for (const [file, label] of specs) {
    const spec = JSON.parse(readFileSync(join(root, 'examples/demo', file), 'utf8'));
    const r = await api('POST', '/runs', spec);
    runs.push({ id: r.id, label, file });
    say(
      `[${elapsed()}] submitted ${label}: run ${r.id} (${r.trialCount} trial${r.trialCount === 1 ? '' : 's'})`,
    );
  }

  // 6. Progress until every trial has finished (trained and evaluated).
  step('train and evaluate');
  const DONE = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'STOPPED']);
  const bar = (f, w = 18) => `[${'#'.repeat(Math.round(f * w)).padEnd(w, '.')}]`;
  let drawn = 0;
  let lastPlain = '';
  let lastPrinted = 0;
  for (;;) {
    const views = await Promise.all(runs.map((r) => api('GET', `/runs/${r.id}`)));
    const lines = [];
    views.forEach((v, i) => {
      for (const t of v.trials) {
        const total = t.totalSteps ?? 0;
        const f = total ? Math.min(1, t.currentStep / total) : 0;
        const hp = Object.entries(t.hyperparameters)
          .map(([k, x]) => `${k.replace('training.', '')}=${x}`)
          .join(' ');
        lines.push(
          `${runs[i].label.padEnd(15)} #${t.index} ${bar(f)} ${String(t.currentStep).padStart(3)}/${total || '?'} ${t.status.padEnd(9)} ${hp}`,
        );
      }
    });
    const evals = views.map((v) => v.status);
    const header = `[${elapsed()}] runs: ${evals.join(', ')}`;
    if (tty) {
      if (drawn) process.stdout.write(`\x1b[${drawn}A`);
      for (const l of [header, ...lines]) process.stdout.write(`\x1b[2K${l}\n`);
      drawn = lines.length + 1;
    } else {
      // Without a terminal: a snapshot when a trial changes status, and every 30 s.
      const statuses = views.map((v) => v.trials.map((t) => t.status).join()).join('|');
      if (statuses !== lastPlain || Date.now() - lastPrinted > 30_000) {
        say(`${header}\n${lines.map((l) => l.replace(/\[[#.]+\] /, '')).join('\n')}`);
        lastPlain = statuses;
        lastPrinted = Date.now();
      }
    }
    const allTrials = views.flatMap((v) => v.trials);
    if (
      views.every((v) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(v.status)) ||
      (allTrials.every((t) => DONE.has(t.status)) &&
        views.every((v) => v.status !== 'RUNNING' && v.status !== 'PENDING'))
    )
      break;
    if (Date.now() - started > 40 * 60_000) throw new Error('the demo did not finish in 40 minutes');
    await new Promise((r) => setTimeout(r, 3000));
  }

  // 7. Results.
  step('results');
  const evalOf = async (run) => (await api('GET', `/runs/${run.id}/evaluations`)).evaluations;
  const results = [];
  for (const run of runs) {
    const view = await api('GET', `/runs/${run.id}`);
    const evs = await evalOf(run);
    const best = view.best
      ? view.trials.find((t) => t.id === view.best.trialId)
      : view.trials.find((t) => evs.some((e) => e.trialId === t.id));
    results.push({ ...run, view, best, evs: best ? evs.filter((e) => e.trialId === best.id) : [] });
  }
  const val = (rows, b, l, m) =>
    rows.find((r) => r.benchmark === b && r.language === l && r.metric === m)?.value;
  const f3 = (x) => (x === undefined ? '   –  ' : x.toFixed(3).padStart(6));
  const p1 = (x) => (x === undefined ? '   – ' : `${(100 * x).toFixed(0).padStart(4)}%`);
  const langs = ['en', 'zh', 'ko', 'ar', 'bn', 'sw'];
  say(`\n[${elapsed()}] done.\n`);
  for (const r of results) {
    if (!r.best) {
      say(`${r.label}: no evaluated trial (${r.view.status})`);
      continue;
    }
    const hp = Object.entries(r.best.hyperparameters)
      .map(([k, x]) => `${k.replace('training.', '')}=${x}`)
      .join(', ');
    say(`${r.label}, best trial #${r.best.index} (${hp}):`);
    say(`  lang   RG before  RG after   ASR before  ASR after`);
    for (const l of langs)
      say(
        `  ${l.padEnd(5)}  ${f3(val(baseline, 'reward-gap', l, 'rg'))}     ${f3(val(r.evs, 'reward-gap', l, 'rg'))}     ${p1(val(baseline, 'multijail', l, 'asr'))}       ${p1(val(r.evs, 'multijail', l, 'asr'))}`,
      );
    say(
      `  avg ASR ${p1(val(baseline, 'multijail', 'avg', 'asr'))} → ${p1(val(r.evs, 'multijail', 'avg', 'asr'))};  utility PPL en ${f3(val(baseline, 'utility', 'en', 'ppl'))} → ${f3(val(r.evs, 'utility', 'en', 'ppl'))}, zh ${f3(val(baseline, 'utility', 'zh', 'ppl'))} → ${f3(val(r.evs, 'utility', 'zh', 'ppl'))}\n`,
    );
  }
  step('report');
  runMpo(
    [
      'report',
      ...runs.map((r) => r.id),
      '--baseline',
      join(work, 'baseline.json'),
      '--out',
      join(work, 'report.md'),
    ],
    {
      env: { MPO_API_URL: base, MPO_TOKEN: token },
    },
  );
  say(`report: ${join(work, 'report.md')}`);
  say(
    `dashboard: ${base}/   (sign in with the token in ${join(work, 'token.txt')}; API docs at ${base}/docs)`,
  );
  writeFileSync(join(work, 'token.txt'), `${token}\n`);
  say(
    `the API and worker are stopped now; \`npm run api\` and \`npm run worker\` start them for good (see README).`,
  );
} catch (err) {
  await fail(err);
}
await shutdown(0);
