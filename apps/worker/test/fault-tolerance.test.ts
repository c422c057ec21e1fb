// Fault tolerance with real processes: agents (dist/main.js) running the real
// trainer (`mpo train` on a tiny random Llama and the golden pairs), real
// Redis and Postgres. Every trial must end bit-identical to an uninterrupted
// run of the same config (final weights hash), with every metric of every
// step in Postgres exactly once, equal to the uninterrupted run's.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDb, type Db } from '@mpo/db';
import {
  EVAL_JOB_OPTIONS,
  evalQueue,
  jobIds,
  type MetricRow,
  TRAIN_JOB_OPTIONS,
  type TrainJobData,
  trainQueue,
} from '@mpo/queue';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pidAlive } from '../src/trial-lock.js';
import {
  type AgentHandle,
  agentEnv,
  DATABASE_URL,
  deleteKeys,
  evalData,
  finishedJob,
  newRedis,
  newTrials,
  type Scratch,
  scratch,
  startAgent,
  TcpProxy,
  trainData,
  waitUntil,
} from './helpers.js';
import { eventFiles, readEvents, scalarsOf } from './tfevents-reader.js';

const STEPS = 600;
/** Wall-clock metrics differ between runs of the same computation. */
const TIMING = new Set(['tokensPerSec']);

const payload = (runId: string, trialId: string): TrainJobData =>
  trainData(runId, trialId, { training: { steps: STEPS, checkpointEvery: 25 } });

const key = (r: { name: string; step: number; language: string | null }) =>
  `${r.name}|${r.step}|${r.language ?? ''}`;

let db: Db;
let redis: Redis;
let s: Scratch;
/** The uninterrupted run: every metric row, and the final weights hash. */
const reference = { rows: new Map<string, number>(), weightsHash: '' };

beforeAll(async () => {
  db = createDb(DATABASE_URL);
  redis = newRedis();
  s = scratch('faults');
  // The uninterrupted trial: the same payload on an agent nobody disturbs. (The
  // agent, not a bare CLI run, so that threads and pinning are the same as below.)
  const { runId, trialIds } = await newTrials(db, 1, 'reference');
  const trialId = trialIds[0]!;
  const q = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
  const a = startAgent(agentEnv(s), 'reference');
  try {
    await q.add('train', payload(runId, trialId), { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(trialId) });
    const done = await waitForJob(q, jobIds.train(trialId));
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED' });
  } finally {
    await a.dispose();
    await q.close();
  }
  for (const r of await metricsOf(trialId)) reference.rows.set(key(r), r.value);
  reference.weightsHash = finalHash(runId, trialId);
  expect(reference.weightsHash).toMatch(/^[0-9a-f]{64}$/);
  expect(reference.rows.size).toBeGreaterThan(STEPS * 10);
});

afterAll(async () => {
  await deleteKeys(redis, s.prefix);
  redis.disconnect();
  await db.close();
});

async function metricsOf(trialId: string): Promise<MetricRow[]> {
  const rows: MetricRow[] = [];
  for (const { name, language } of await db.metrics.seriesNames(trialId)) {
    for (const p of await db.metrics.series(trialId, name, { language })) {
      rows.push({ name, language, step: p.step, value: p.value });
    }
  }
  return rows;
}

const finalHash = (runId: string, trialId: string): string =>
  JSON.parse(readFileSync(join(s.artifactRoot, runId, trialId, 'final/training.json'), 'utf8')).weightsHash;

/** Every metric row of the trial, exactly once, equal to the uninterrupted run's; the same final weights. */
async function expectSameAsUninterrupted(runId: string, trialId: string): Promise<void> {
  const rows = await metricsOf(trialId);
  expect(rows.length).toBe(await db.metrics.count(trialId));
  const got = new Map(rows.map((r) => [key(r), r.value]));
  expect(got.size).toBe(rows.length); // no (name, step, language) twice
  expect([...got.keys()].sort()).toEqual([...reference.rows.keys()].sort());
  const differing = [...got].filter(([k, v]) => !TIMING.has(k.split('|')[0]!) && v !== reference.rows.get(k));
  expect(differing.slice(0, 5)).toEqual([]);
  const loss = await db.metrics.series(trialId, 'loss', { language: null });
  expect(loss.map((p) => p.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
  expect(finalHash(runId, trialId)).toBe(reference.weightsHash);
  expect(await db.runs.trial(trialId)).toMatchObject({
    status: 'SUCCEEDED',
    currentStep: STEPS,
    error: null,
  });
}

const waitForJob = (queue: Queue, id: string, timeoutMs = 100_000): Promise<Job> =>
  finishedJob(queue, id, 'job', timeoutMs);

const stepReached = (trialId: string, step: number) =>
  waitUntil(async () => ((await db.runs.trial(trialId)).currentStep >= step ? true : null), `step ${step}`);

const childPids = (agent: AgentHandle, jobId: string) =>
  (agent.logs.find((l) => l.jobId === jobId && l.msg === 'trainer launched')?.pids as number[]) ?? [];

const resumedFrom = (agent: AgentHandle, jobId: string) =>
  agent.logs.find((l) => l.jobId === jobId && l.msg === 'trainer started')?.resumedFrom;

describe('fault tolerance (real trainer)', () => {
  const agents: AgentHandle[] = [];
  const start = (env: Record<string, string>, id?: string) => {
    const a = startAgent(env, id);
    agents.push(a);
    return a;
  };
  let train: Queue;
  beforeAll(() => {
    train = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
  });
  afterAll(async () => {
    for (const a of agents) await a.dispose();
    await train.close();
  });

  it('SIGKILL mid-trial: the job comes back after its lock expires and another agent resumes it', async () => {
    const { runId, trialIds } = await newTrials(db, 1, 'sigkill');
    const trialId = trialIds[0]!;
    const job = await train.add('train', payload(runId, trialId), {
      ...TRAIN_JOB_OPTIONS,
      jobId: jobIds.train(trialId),
    });
    const a = start(agentEnv(s), 'killed');
    await stepReached(trialId, 150);
    const pids = childPids(a, job.id!);
    expect(pids.length).toBe(1);
    a.proc.kill('SIGKILL');
    await a.exited;
    // The trainer dies with its agent (PR_SET_PDEATHSIG), so it cannot race the next one.
    await waitUntil(() => pids.every((p) => !pidAlive(p)), 'the orphaned trainer to die', 5_000);

    const b = start(agentEnv(s), 'rescuer');
    const done = await waitForJob(train, job.id!);
    expect(await done.getState()).toBe('completed');
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
    const from = resumedFrom(b, job.id!) as number;
    expect(from).toBeGreaterThanOrEqual(150 - 25);
    expect(from % 25).toBe(0);
    // What the killed agent had not yet written came back from its protocol file.
    expect(
      b.logs.find((l) => l.jobId === job.id && l.msg === 'replayed earlier attempts up to the checkpoint'),
    ).toMatchObject({
      resumedFrom: from,
      replayed: expect.any(Number),
    });
    expect((await db.runs.trial(trialId)).attempt).toBe(2);
    await expectSameAsUninterrupted(runId, trialId);
    // TensorBoard: the second attempt's file replays the steps up to the checkpoint (the killed attempt may
    // not have flushed them), then marks SessionLog START at the next step, so TensorBoard drops what the killed
    // attempt wrote beyond the checkpoint; together the files hold every step's loss.
    const tb = eventFiles(join(s.artifactRoot, runId, trialId, 'tensorboard')).map(readEvents);
    expect(tb.length).toBeGreaterThanOrEqual(2);
    expect(tb.flat().filter((e) => e.session_log)).toMatchObject([
      { step: 0, session_log: { status: 'START' } },
      { step: from + 1, session_log: { status: 'START' } },
    ]);
    const losses = new Set([...scalarsOf(tb.flat()).keys()].filter((k) => k.startsWith('loss@')));
    expect(losses.size).toBe(STEPS);
    await b.dispose();
  });

  it('SIGTERM: the agent finishes the step, checkpoints, releases the job and exits', async () => {
    const { runId, trialIds } = await newTrials(db, 1, 'sigterm');
    const trialId = trialIds[0]!;
    const data = payload(runId, trialId);
    const job = await train.add('train', data, { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(trialId) });
    const a = start(agentEnv(s), 'terminated');
    await stepReached(trialId, 100);
    const pids = childPids(a, job.id!);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(pids.every((p) => !pidAlive(p))).toBe(true);
    const released = (await train.getJob(job.id!))!;
    expect(await released.getState()).toBe('waiting');
    expect(released.attemptsMade).toBe(0);
    expect(released.failedReason).toBeFalsy();
    const trial = await db.runs.trial(trialId);
    expect(trial.status).toBe('QUEUED');
    const ckpt = await db.artifacts.latestCheckpoint(trialId);
    expect(ckpt?.step).toBe(trial.currentStep); // the step it stopped at, checkpointed
    expect(a.logs.some((l) => l.jobId === job.id && l.msg === 'job released back to the queue')).toBe(true);

    const b = start(agentEnv(s), 'successor');
    const done = await waitForJob(train, job.id!);
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED' });
    expect(resumedFrom(b, job.id!)).toBe(ckpt!.step);
    await expectSameAsUninterrupted(runId, trialId);
    await b.dispose();
  });

  it('Redis restarted mid-run (AOF on): the run continues', async () => {
    const port = await freePort();
    const dir = join(s.dir, 'redis');
    mkdirSync(dir, { recursive: true });
    let server = await startRedis(port, dir);
    const url = `redis://127.0.0.1:${port}`;
    const own = newRedis(url);
    const q = new Queue(trainQueue('cpu'), { connection: own, prefix: s.prefix });
    try {
      const { runId, trialIds } = await newTrials(db, 1, 'redis');
      const trialId = trialIds[0]!;
      const job = await q.add('train', payload(runId, trialId), {
        ...TRAIN_JOB_OPTIONS,
        jobId: jobIds.train(trialId),
      });
      const a = start(agentEnv(s, { REDIS_URL: url, MPO_LOCK_DURATION_MS: '10000' }), 'redis-restart');
      await stepReached(trialId, 100);
      server.kill('SIGTERM'); // a clean shutdown flushes the AOF
      await new Promise((r) => server.once('exit', r));
      expect((await db.runs.trial(trialId)).status).toBe('RUNNING'); // the outage falls mid-trial
      await sleep(2_000);
      server = await startRedis(port, dir);
      const done = await waitForJob(q, job.id!);
      expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED' });
      expect(a.logs.some((l) => l.msg === 'redis connection lost; reconnecting')).toBe(true);
      // Same agent, same attempt: the lock outlived the restart.
      expect((await db.runs.trial(trialId)).attempt).toBe(1);
      expect(a.proc.exitCode).toBeNull();
      await expectSameAsUninterrupted(runId, trialId);
      await a.dispose();
    } finally {
      await q.close();
      own.disconnect();
      server.kill('SIGKILL');
    }
  });

  it('Redis paused past the job lock: the trainer checkpoints and stops, the next attempt resumes there, no step lost', async () => {
    const port = await freePort();
    const server = await startRedis(port, join(s.dir, 'redis-pause'), false);
    const url = `redis://127.0.0.1:${port}`;
    const own = newRedis(url);
    const q = new Queue(trainQueue('cpu'), { connection: own, prefix: s.prefix });
    try {
      const { runId, trialIds } = await newTrials(db, 1, 'redis-pause');
      const trialId = trialIds[0]!;
      const job = await q.add('train', payload(runId, trialId), {
        ...TRAIN_JOB_OPTIONS,
        jobId: jobIds.train(trialId),
      });
      // A 1.5 s lock: a 15 s pause outlives it, and the watchdog fires while the (fast) trainer
      // is still mid-trial (Redis is paused as soon as the trainer has started).
      const a = start(
        agentEnv(s, { REDIS_URL: url, MPO_LOCK_DURATION_MS: '1500', MPO_STOP_GRACE_MS: '20000' }),
        'redis-pause',
      );
      await a.waitForLog((l) => l.msg === 'trainer started', 60_000, 'the trainer to start');
      await own.call('CLIENT', 'PAUSE', '15000', 'ALL');
      const lost = await a.waitForLog(
        (l) => l.msg === 'lost the job lock; asking the child to checkpoint and stop',
        20_000,
        'the lock watchdog',
      );
      expect(lost.jobId).toBe(job.id);
      // This agent leaves (a lock this short is for the outage only; on a loaded machine it would
      // also run out between renewals); one with the usual lock takes the job over.
      a.proc.kill('SIGTERM');
      const stoppedAt = (await a.waitForLog((l) => l.msg === 'trainer exited', 30_000, 'the trainer to exit'))
        .step as number;
      expect(stoppedAt).toBeLessThan(STEPS);
      // The trainer stopped on SIGTERM with a checkpoint of the step it was at.
      expect((await db.artifacts.latestCheckpoint(trialId))?.step).toBe(stoppedAt);
      await a.exited;
      const b = start(agentEnv(s, { REDIS_URL: url }), 'redis-pause-rescuer');
      const done = await waitForJob(q, job.id!);
      expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
      expect(resumedFrom(b, job.id!)).toBe(stoppedAt);
      expect((await db.runs.trial(trialId)).attempt).toBe(2);
      await expectSameAsUninterrupted(runId, trialId);
      await b.dispose();
    } finally {
      await q.close();
      own.disconnect();
      server.kill('SIGKILL');
    }
  });

  it('Postgres unreachable for a while: the agent buffers metrics, retries, and loses nothing', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
    await proxy.open();
    try {
      const { runId, trialIds } = await newTrials(db, 1, 'postgres');
      const trialId = trialIds[0]!;
      const job = await train.add('train', payload(runId, trialId), {
        ...TRAIN_JOB_OPTIONS,
        jobId: jobIds.train(trialId),
      });
      const a = start(
        agentEnv(s, { DATABASE_URL: proxy.url(), MPO_DB_CONNECT_TIMEOUT_MS: '1000' }),
        'postgres-outage',
      );
      await stepReached(trialId, 100);
      await proxy.cut();
      const cutAt = ((await train.getJob(job.id!))!.progress as { step: number }).step;
      await sleep(3_000);
      // Training went on while the database was away.
      const during = ((await train.getJob(job.id!))!.progress as { step: number }).step;
      expect(during).toBeGreaterThan(cutAt);
      await proxy.open();
      const done = await waitForJob(train, job.id!);
      expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED' });
      expect(a.logs.some((l) => l.msg === 'writing metrics to Postgres failed; keeping them buffered')).toBe(
        true,
      );
      await expectSameAsUninterrupted(runId, trialId);
      await a.dispose();
    } finally {
      await proxy.cut();
    }
  });

  it('evaluates a trained trial with the real `mpo eval`', async () => {
    const { runId, trialIds } = await newTrials(db, 1, 'eval');
    const trialId = trialIds[0]!;
    const short = trainData(runId, trialId, { training: { steps: 10 } });
    const a = start(agentEnv(s), 'evaluator');
    await train.add('train', short, { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await waitForJob(train, jobIds.train(trialId));
    const evals = new Queue(evalQueue('cpu'), { connection: redis, prefix: s.prefix });
    try {
      const job = await evals.add(
        'eval',
        evalData(runId, trialId, { benchmarks: ['multijail'], languages: ['en', 'zh'], maxPrompts: 2 }),
        { ...EVAL_JOB_OPTIONS, jobId: jobIds.eval(trialId) },
      );
      const done = await waitForJob(evals, job.id!);
      expect(done.failedReason).toBeFalsy();
      expect(done.returnvalue).toMatchObject({ status: 'EVALUATED' });
      const rows = await db.artifacts.evaluations({ trialId });
      expect(rows.map((r) => `${r.benchmark}/${r.language}/${r.metric}`)).toEqual(
        expect.arrayContaining(['multijail/en/asr', 'multijail/zh/asr']),
      );
      expect(rows.every((r) => r.n > 0 && Number.isFinite(r.value))).toBe(true);
    } finally {
      await evals.close();
      await a.dispose();
    }
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function startRedis(port: number, dir: string, appendOnly = true): Promise<ChildProcess> {
  mkdirSync(dir, { recursive: true });
  const p = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--appendonly',
      appendOnly ? 'yes' : 'no',
      '--dir',
      dir,
      '--save',
      '',
    ],
    { stdio: 'ignore' },
  );
  const probe = newRedis(`redis://127.0.0.1:${port}`);
  probe.on('error', () => {});
  try {
    await waitUntil(
      async () => (await probe.ping().catch(() => null)) === 'PONG',
      'redis-server',
      10_000,
      50,
    );
  } finally {
    probe.disconnect();
  }
  return p;
}
