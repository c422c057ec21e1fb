#!/usr/bin/env node
// `npm run chaos` (setup, which builds, then this script; issue 16 item 11): a fault-injection run, not part of `npm test` (it takes
// several minutes). A small sweep (TRIALS trials of the tiny random Llama on the golden pairs, a grid
// over the training seed and beta) trains on two real agents (apps/worker/dist/main.js, real `mpo
// train` children) against a Redis and a Postgres of its own, on free ports (the shared servers are
// never touched). Meanwhile a seeded random schedule injects faults when the sweep reaches random
// steps:
//   agent-kill      SIGKILL an agent (its trainer dies with it); a new agent starts a second later
//   agent-term      SIGTERM an agent (checkpoint, hand the job back); a new agent starts
//   trainer-kill    SIGKILL a running trainer (the attempt fails; BullMQ retries it, ≤ attempts - 1 per trial)
//   redis-pause     CLIENT PAUSE ALL for 2-8 s (past the agents' 4 s job lock when long)
//   postgres-stop   pg_ctl stop -m fast for 5-20 s (MPO_CHAOS_PG_OUTAGE_S=180 for the 3 minutes)
// Then it checks, for every trial, against an uninterrupted run of the same payload (run first, on a
// calm agent): the trial SUCCEEDED; its final weights hash is identical; every metric row is stored
// exactly once with the same value (wall-clock metrics aside); every step 1..STEPS has its loss.
// Prints a JSON report (faults injected by kind, trials checked, survived) and exits 1 on any failure.
//
//   npm run chaos                      # seed 1
//   MPO_CHAOS_SEED=7 MPO_CHAOS_FAULTS=20 npm run chaos
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '@mpo/util';
import { ownPostgres, ownRedis } from './lib/own-servers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SEED = Number(process.env.MPO_CHAOS_SEED ?? 1);
const FAULTS = Number(process.env.MPO_CHAOS_FAULTS ?? 12);
const TRIALS = Number(process.env.MPO_CHAOS_TRIALS ?? 4);
const STEPS = Number(process.env.MPO_CHAOS_STEPS ?? 400);
const AGENTS = Number(process.env.MPO_CHAOS_AGENTS ?? 2);
const PG_OUTAGE_S = process.env.MPO_CHAOS_PG_OUTAGE_S ? Number(process.env.MPO_CHAOS_PG_OUTAGE_S) : null;
const TIMEOUT_MS = Number(process.env.MPO_CHAOS_TIMEOUT_S ?? 1800) * 1000;
/** Wall-clock metrics differ between runs of the same computation. */
const TIMING = new Set(['tokensPerSec']);
const KINDS = ['agent-kill', 'agent-term', 'trainer-kill', 'redis-pause', 'postgres-stop'];

const log = (msg, extra = {}) =>
  process.stdout.write(`${JSON.stringify({ t: new Date().toISOString().slice(11, 19), msg, ...extra })}\n`);

/** A seeded PRNG (mulberry32), so a seed always gives the same fault schedule. */
const rng = mulberry32;

/** FAULTS faults, each at a random point of the sweep's total progress (sum of the trials' steps). */
function schedule(random) {
  const total = TRIALS * STEPS;
  const faults = [];
  for (let i = 0; i < FAULTS; i++) {
    const kind = KINDS[i % KINDS.length]; // every kind, in a seeded order of points
    faults.push({
      kind,
      atProgress: Math.floor(total * (0.05 + 0.85 * random())),
      pick: random(),
      seconds:
        kind === 'redis-pause'
          ? 2 + Math.round(6 * random())
          : kind === 'postgres-stop'
            ? (PG_OUTAGE_S ?? 5 + Math.round(15 * random()))
            : 0,
    });
  }
  return faults.sort((a, b) => a.atProgress - b.atProgress);
}

const importDist = (pkg) => import(join(root, 'packages', pkg, 'dist/index.js'));

async function main() {
  const { createDb, migrate } = await importDist('db');
  const queueLib = await importDist('queue');
  const { Queue } = await import('bullmq');
  const { Redis } = await import('ioredis');

  const work = mkdtempSync(join(tmpdir(), 'mpo-chaos-'));
  const dirs = { models: join(work, 'models'), data: join(work, 'data'), artifacts: join(work, 'artifacts') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  writeFileSync(join(dirs.models, 'tiny.json'), JSON.stringify(TINY_MODEL));
  const pg = await ownPostgres({ tag: 'chaos-pg' });
  const redisServer = await ownRedis({ appendOnly: true, dir: work });
  await migrate({ databaseUrl: pg.url });
  const db = createDb(pg.url, { connectTimeoutMs: 1_000 });
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  const prefix = `chaos-${randomUUID().slice(0, 8)}`;
  const queue = new Queue(queueLib.trainQueue('cpu'), { connection: redis, prefix });
  const agents = new Set();
  const started = Date.now();
  const report = {
    seed: SEED,
    trials: TRIALS,
    steps: STEPS,
    agents: AGENTS,
    machine: {
      cpus: (await import('node:os')).cpus().length,
      loadAvgAtStart: loadavg().map((x) => +x.toFixed(2)),
    },
    injected: Object.fromEntries(KINDS.map((k) => [k, 0])),
    skipped: [],
    checks: [],
  };

  const agentEnv = (extra = {}) => ({
    ...process.env,
    DATABASE_URL: pg.url,
    REDIS_URL: redisServer.url,
    MPO_QUEUE_PREFIX: prefix,
    MPO_DEVICES: 'cpu:1',
    MPO_MODEL_ROOT: dirs.models,
    MPO_DATA_ROOT: dirs.data,
    MPO_ARTIFACT_ROOT: dirs.artifacts,
    LOG_LEVEL: 'info',
    MPO_LOCK_DURATION_MS: '4000',
    MPO_STALLED_INTERVAL_MS: '1000',
    MPO_HEARTBEAT_MS: '500',
    MPO_METRIC_FLUSH_MS: '200',
    MPO_DB_RETRY_MAX_MS: '1000',
    MPO_DB_CONNECT_TIMEOUT_MS: '1000',
    MPO_DRAIN_DELAY_S: '1',
    MPO_STOP_GRACE_MS: '20000',
    ...extra,
  });
  let agentNo = 0;
  const startAgent = () => {
    const id = `chaos-agent-${++agentNo}`;
    const proc = spawn(process.execPath, [join(root, 'apps/worker/dist/main.js')], {
      env: { ...agentEnv(), MPO_AGENT_ID: id },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const a = { id, proc, trainers: new Map(), exited: new Promise((r) => proc.once('exit', r)) };
    let buf = '';
    proc.stdout.on('data', (chunk) => {
      buf += chunk.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        try {
          const j = JSON.parse(l);
          if (j.msg === 'trainer launched') a.trainers.set(j.jobId, j.pids);
          if (j.msg === 'trainer exited') a.trainers.delete(j.jobId);
        } catch {
          // not a log line
        }
      }
    });
    proc.stderr.on('data', () => {});
    agents.add(a);
    void a.exited.then(() => agents.delete(a));
    return a;
  };
  const stopAgent = async (a, signal) => {
    a.proc.kill(signal);
    const t = setTimeout(() => a.proc.kill('SIGKILL'), 60_000);
    await a.exited;
    clearTimeout(t);
  };

  const payload = (runId, trialId, i) =>
    trainPayload(queueLib.CONTRACT_VERSION, runId, trialId, i, {
      seed: 1 + (i % 2),
      beta: i < 2 ? 0.1 : 0.3,
    });
  const addRun = async (name) => {
    const { run } = await db.runs.create({
      name: `${name}-${randomUUID().slice(0, 8)}`,
      spec: { chaos: true },
      trials: Array.from({ length: TRIALS }, (_, i) => ({ hyperparameters: { i } })),
    });
    const ids = run.trials.map((t) => t.id);
    for (const [i, trialId] of ids.entries()) {
      await queue.add('train', payload(run.id, trialId, i), {
        ...queueLib.TRAIN_JOB_OPTIONS,
        jobId: queueLib.jobIds.train(trialId),
      });
    }
    return { runId: run.id, trialIds: ids };
  };
  const jobsOf = (ids) => Promise.all(ids.map((id) => queue.getJob(queueLib.jobIds.train(id))));
  const finished = async (ids) => {
    const states = await Promise.all((await jobsOf(ids)).map((j) => j?.getState()));
    return states.every((s) => s === 'completed' || s === 'failed');
  };
  const metricsOf = async (trialId) => {
    const rows = new Map();
    for (const { name, language } of await db.metrics.seriesNames(trialId)) {
      for (const p of await db.metrics.series(trialId, name, { language })) {
        rows.set(`${name}|${p.step}|${language ?? ''}`, p.value);
      }
    }
    return rows;
  };
  const weightsHash = (runId, trialId) =>
    JSON.parse(readFileSync(join(dirs.artifacts, runId, trialId, 'final/training.json'), 'utf8')).weightsHash;

  try {
    // 1. The uninterrupted sweep: the reference every faulted trial must equal.
    log('reference sweep (no faults)', { trials: TRIALS, steps: STEPS, agents: AGENTS });
    const ref = await addRun('chaos-reference');
    for (let i = 0; i < AGENTS; i++) startAgent();
    while (!(await finished(ref.trialIds))) await sleep(500);
    const reference = [];
    for (const id of ref.trialIds)
      reference.push({ rows: await metricsOf(id), hash: weightsHash(ref.runId, id) });
    const refS = (Date.now() - started) / 1000;
    log('reference done', { seconds: refS });

    // 2. The same sweep under faults.
    const random = rng(SEED);
    const plan = schedule(random);
    report.schedule = plan.map((f) => ({ kind: f.kind, atProgress: f.atProgress, seconds: f.seconds }));
    const chaos = await addRun('chaos');
    const trainerKills = new Map();
    const chaosStart = Date.now();
    const progressOf = async () => {
      try {
        const jobs = await Promise.race([
          jobsOf(chaos.trialIds),
          sleep(2_000).then(() => {
            throw new Error('Redis paused');
          }),
        ]);
        return jobs.reduce((sum, j) => {
          if (j?.finishedOn) return sum + STEPS;
          return sum + (j?.progress?.step ?? 0);
        }, 0);
      } catch {
        return null;
      }
    };
    for (const f of plan) {
      for (;;) {
        if (Date.now() - chaosStart > TIMEOUT_MS) throw new Error('timed out before every fault fired');
        const p = await progressOf();
        if (p !== null && p >= f.atProgress) break;
        await sleep(200);
      }
      if (await finished(chaos.trialIds)) {
        report.skipped.push({ kind: f.kind, why: 'the sweep had finished' });
        continue;
      }
      await inject(f);
    }
    async function inject(f) {
      const live = [...agents].filter((a) => a.proc.exitCode === null);
      const which = live[Math.floor(f.pick * live.length)];
      if ((f.kind === 'agent-kill' || f.kind === 'agent-term') && which) {
        log(`inject ${f.kind}`, { agent: which.id });
        await stopAgent(which, f.kind === 'agent-kill' ? 'SIGKILL' : 'SIGTERM');
        await sleep(1_000);
        startAgent();
      } else if (f.kind === 'trainer-kill') {
        const running = live.flatMap((a) => [...a.trainers.entries()]);
        const candidates = running.filter(
          ([job]) => (trainerKills.get(job) ?? 0) < queueLib.TRAIN_JOB_OPTIONS.attempts - 1,
        );
        if (!candidates.length) {
          report.skipped.push({ kind: f.kind, why: 'no running trainer with an attempt to spare' });
          return;
        }
        const [job, pids] = candidates[Math.floor(f.pick * candidates.length)];
        trainerKills.set(job, (trainerKills.get(job) ?? 0) + 1);
        // Not a target again until its next attempt launches a new trainer (the agent logs that).
        for (const a of live) a.trainers.delete(job);
        log('inject trainer-kill', { job, pids });
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      } else if (f.kind === 'redis-pause') {
        log('inject redis-pause', { seconds: f.seconds });
        await redisServer.pause(f.seconds * 1000);
        await sleep(f.seconds * 1000);
      } else if (f.kind === 'postgres-stop') {
        log('inject postgres-stop', { seconds: f.seconds });
        pg.stop();
        await sleep(f.seconds * 1000);
        pg.start();
      } else {
        report.skipped.push({ kind: f.kind, why: 'no live agent' });
        return;
      }
      report.injected[f.kind] += 1;
    }
    while (!(await finished(chaos.trialIds))) {
      if (Date.now() - chaosStart > TIMEOUT_MS) throw new Error('timed out waiting for the sweep to finish');
      if (agents.size < AGENTS) startAgent();
      await sleep(500);
    }
    report.chaosSeconds = (Date.now() - chaosStart) / 1000;
    report.referenceSeconds = refS;

    // 3. Checks, trial by trial.
    for (const [i, trialId] of chaos.trialIds.entries()) {
      const problems = [];
      const trial = await db.runs.trial(trialId);
      if (trial.status !== 'SUCCEEDED') problems.push(`status ${trial.status}: ${trial.error}`);
      let hash = null;
      try {
        hash = weightsHash(chaos.runId, trialId);
      } catch (err) {
        problems.push(`no final weights: ${err.message}`);
      }
      if (hash !== reference[i].hash) problems.push(`weights ${hash} != reference ${reference[i].hash}`);
      const rows = await metricsOf(trialId);
      const count = await db.metrics.count(trialId);
      if (count !== rows.size) problems.push(`${count} rows stored for ${rows.size} distinct keys`);
      const missing = [...reference[i].rows.keys()].filter((k) => !rows.has(k));
      const extra = [...rows.keys()].filter((k) => !reference[i].rows.has(k));
      const differing = [...rows].filter(
        ([k, v]) =>
          !TIMING.has(k.split('|')[0]) && reference[i].rows.has(k) && reference[i].rows.get(k) !== v,
      );
      if (missing.length) problems.push(`${missing.length} metric rows missing, e.g. ${missing.slice(0, 3)}`);
      if (extra.length) problems.push(`${extra.length} metric rows extra, e.g. ${extra.slice(0, 3)}`);
      if (differing.length) problems.push(`${differing.length} metric values differ, e.g. ${differing[0]}`);
      const lossSteps = [...rows.keys()].filter((k) => k.startsWith('loss|')).length;
      if (lossSteps !== STEPS) problems.push(`${lossSteps} loss steps, want ${STEPS}`);
      report.checks.push({
        trial: i,
        attempts: trial.attempt,
        rows: rows.size,
        weightsEqual: hash === reference[i].hash,
        problems,
      });
    }
    report.machine.loadAvgAtEnd = loadavg().map((x) => +x.toFixed(2));
    const injected = Object.values(report.injected).reduce((a, b) => a + b, 0);
    const ok = report.checks.every((c) => c.problems.length === 0);
    report.summary = {
      faultsInjected: injected,
      faultsSurvived: ok ? injected : 0,
      trialsOk: report.checks.filter((c) => c.problems.length === 0).length,
      trials: TRIALS,
      ok,
    };
    log('chaos report', report);
    if (process.env.MPO_CHAOS_REPORT)
      writeFileSync(process.env.MPO_CHAOS_REPORT, `${JSON.stringify(report, null, 2)}\n`);
    process.exitCode = ok ? 0 : 1;
  } finally {
    await Promise.allSettled([...agents].map((a) => stopAgent(a, 'SIGKILL')));
    await queue.close().catch(() => {});
    redis.disconnect();
    if (!pg.running()) pg.start();
    await db.close(2_000);
    await redisServer.stop();
    pg.destroy();
    if (process.env.MPO_CHAOS_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  }
}

/** The tiny random Llama of the worker tests (apps/worker/test/helpers.ts TINY_MODEL): a step takes milliseconds. */
const TINY_MODEL = {
  init: {
    vocabSize: 264,
    hiddenSize: 32,
    intermediateSize: 64,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 512,
    bosTokenId: 256,
    eosTokenId: 257,
    padTokenId: 258,
    architecture: 'LlamaForCausalLM',
  },
  seed: 1,
};

/** A train job of the sweep (the shape of apps/worker/test/helpers.ts trainData). */
function trainPayload(v, runId, trialId, trialIndex, { seed, beta }) {
  return {
    v,
    runId,
    trialId,
    trialIndex,
    method: 'dpo',
    hyperparameters: { beta },
    params: {},
    model: { kind: 'path', path: 'tiny.json' },
    data: [{ kind: 'builtin', id: 'golden-pairs' }],
    dominantLanguage: 'en',
    targetLanguages: ['zh', 'ko', 'ar', 'bn', 'sw'],
    totalSteps: STEPS,
    slots: { device: 'cpu', count: 1 },
    objective: { metric: 'loss', mode: 'min' },
    training: {
      steps: STEPS,
      batchSize: 2,
      microBatch: 1,
      cutoff: 64,
      checkpointEvery: 25,
      seed,
      learningRate: 1e-3,
      warmupRatio: 0.1,
    },
  };
}

main().catch((err) => {
  log('chaos run failed', { err: err.stack ?? String(err) });
  process.exitCode = 1;
});
