// A trial spanning hosts (issue 15 item 3), with real processes: agents (dist/main.js) that say they are
// on different hosts (MPO_HOST_ID), each with one CPU slot on its own core, run one trial of 2 ranks,
// 1 per host, gang-scheduled through Redis; the ranks all-reduce through libtorch's c10d gloo over
// loopback (the hierarchical communicator: one rank per host, so gloo alone).
//  1. One agent alone: the gang cannot fill, the reservation deadline passes, the slot is released and
//     the job waits (no rank ever started); a second host's agent arrives and the trial completes with
//     the weights of the same trial on one host (2 ranks over shared memory), within 1e-6. Two such
//     trials queued at once on these two agents (each may open a gang and wait for the other): the
//     younger gang gives way, and both complete.
//  2. The agent of host 1 is SIGKILLed mid-trial: host 0's agent sees its seat die within the liveness
//     timeout, kills its own rank and fails the attempt; the retry forms a gang with a third host's
//     agent, resumes from the last checkpoint and ends with the same weights, every step's loss once.
//  3. Host 1 freezes (SIGSTOP of its agent and rank: no connection is reset, gloo would wait for its
//     timeout): host 0's agent sees the seat's liveness expire in Redis and kills its rank; the retry
//     completes on the other agents.
//  4. Host 0's agent (the one that holds the job) is SIGKILLed: host 1's rank fails through gloo and its
//     seat ends; the job's lock expires, the job is re-queued and resumes on the agents left plus a new one.
//  5. Host 1's agent is stopped gracefully (SIGTERM): every rank stops after the same step (the trainer
//     all-reduces its stop flag), rank 0 checkpoints, the job goes back to the queue without using an
//     attempt and resumes with another host.
import { join } from 'node:path';
import { c10dBackends } from '@mpo/allreduce';
import { createDb, type Db } from '@mpo/db';
import { Model } from '@mpo/engine';
import { jobIds, type TrainJobData, trainQueue } from '@mpo/queue';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pidAlive } from '../src/trial-lock.js';
import {
  type AgentHandle,
  agentEnv,
  DATABASE_URL,
  deleteKeys,
  finishedJob,
  newRedis,
  newTrials,
  type Scratch,
  scratch,
  startAgent,
  trainData,
  waitUntil,
} from './helpers.js';

const STEPS = 120;
// Short for a quick test, but several event-loop stalls long on a loaded 2-core CI machine (1.5 s failed live hosts there).
const LIVENESS_MS = 3_000;
const training = { steps: STEPS, checkpointEvery: 20, batchSize: 2, microBatch: 1 };
/** Retries come back fast here (production: TRAIN_JOB_OPTIONS' exponential 10 s backoff). */
const JOB_OPTIONS = { attempts: 4, backoff: { type: 'fixed', delay: 300 } };

let db: Db;
let redis: Redis;
let s: Scratch;
let q: Queue;
let runId: string;
let trials: string[];
const agents: AgentHandle[] = [];
/** The core each host's agent runs on: a replacement host takes the core of the one it replaces. */
const coreOf = new Map<string, number>();

/** An agent on host `host` with one CPU slot on core `core`, its c10d store reachable on loopback. */
function hostAgent(host: string, core: number, id: string, extra: Record<string, string> = {}) {
  const a = startAgent(
    agentEnv(s, {
      MPO_DEVICES: 'cpu:1',
      MPO_CPU_CORES: String(core),
      MPO_HOST_ID: host,
      MPO_HOST_ADDR: '127.0.0.1',
      MPO_GANG_LIVENESS_MS: String(LIVENESS_MS),
      MPO_C10D_TIMEOUT_MS: '10000',
      ...extra,
    }),
    id,
  );
  agents.push(a);
  coreOf.set(id, core);
  return a;
}

const finished = (id: string) => finishedJob(q, id, 'job', 90_000);

const finalDir = (trialId: string) => join(s.artifactRoot, runId, trialId, 'final');

async function maxWeightDiff(a: string, b: string): Promise<number> {
  const [ma, mb] = await Promise.all([Model.load(a, { threads: 1 }), Model.load(b, { threads: 1 })]);
  const pa = ma.paramBuffer();
  const pb = mb.paramBuffer();
  let d = 0;
  for (let i = 0; i < pa.length; i++) d = Math.max(d, Math.abs(pa[i]! - pb[i]!));
  ma.dispose();
  mb.dispose();
  return d;
}

const spanning = (trialId: string, trialIndex: number): TrainJobData =>
  trainData(runId, trialId, { trialIndex, training, slots: { device: 'cpu', count: 2, ranksPerHost: 1 } });

async function lossSteps(trialId: string): Promise<number[]> {
  return (await db.metrics.series(trialId, 'loss', { language: null })).map((p) => p.step);
}

beforeAll(async () => {
  db = createDb(DATABASE_URL);
  redis = newRedis();
  s = scratch('gang');
  q = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
  ({ runId, trialIds: trials } = await newTrials(db, 8, 'gang'));
  // The one-host run: the same 2 ranks on one agent's 2 slots (shared-memory all-reduce).
  const one = startAgent(agentEnv(s, { MPO_DEVICES: 'cpu:2' }), 'one-host');
  agents.push(one);
  await q.add('train', trainData(runId, trials[0]!, { training, slots: { device: 'cpu', count: 2 } }), {
    ...JOB_OPTIONS,
    jobId: jobIds.train(trials[0]!),
  });
  expect((await finished(jobIds.train(trials[0]!))).returnvalue).toMatchObject({ status: 'SUCCEEDED' });
  await one.dispose();
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.dispose();
  await q?.close();
  await deleteKeys(redis, s.prefix);
  redis.disconnect();
  await db.close();
});

describe.skipIf(!c10dBackends().includes('gloo'))('a trial spanning two hosts (gang + c10d gloo)', () => {
  it('waits for a second host (reservation deadline releases the slot), then trains like one host', async () => {
    const trialId = trials[1]!;
    const a = hostAgent('host-a', 0, 'gang-a', { MPO_GANG_RESERVATION_MS: '1500' });
    const job = await q.add('train', spanning(trialId, 1), { ...JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await a.waitForLog((l) => l.msg === 'gang did not fill by its deadline', 20_000, 'the gang deadline');
    await a.waitForLog((l) => l.msg === 'job delayed' && l.jobId === job.id, 5_000, 'the job put back');
    // No half-started trial: nothing was launched, the attempt was not spent, the trial never ran.
    expect(a.logs.some((l) => l.msg === 'trainer launched')).toBe(false);
    const untouched = await db.runs.trial(trialId);
    expect(untouched.status).toBe('PENDING');
    expect(untouched.attempt).toBe(0);
    expect((await q.getJob(job.id!))?.attemptsMade).toBe(0);

    hostAgent('host-b', 1, 'gang-b');
    const expectLikeOneHost = async (id: string, j: Job) => {
      const done = await finished(j.id!);
      expect(done.returnvalue, done.failedReason).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
      // Rank 0 alone reports: every step's loss exactly once.
      expect(await lossSteps(id)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
      expect(await maxWeightDiff(finalDir(trials[0]!), finalDir(id))).toBeLessThan(1e-6);
    };
    await expectLikeOneHost(trialId, job);

    // Two at once on two idle agents: each fetches one and opens a gang the other must join.
    const [x, y] = [trials[6]!, trials[7]!];
    const pair = await q.addBulk(
      [x, y].map((id, i) => ({
        name: 'train',
        data: spanning(id, 6 + i),
        opts: { ...JOB_OPTIONS, jobId: jobIds.train(id) },
      })),
    );
    await expectLikeOneHost(x, pair[0]!);
    await expectLikeOneHost(y, pair[1]!);
    const gaveWay = agents.flatMap((a) =>
      a.logs.filter((l) => l.msg === 'an older gang needs this host: giving way'),
    );
    // Both agents fetched one each (the usual case): the younger gang gave way, not the deadline.
    if (
      agents.filter((a) =>
        a.logs.some((l) => l.msg === 'gang opened' && (l.jobId === pair[0]!.id || l.jobId === pair[1]!.id)),
      ).length === 2
    )
      expect(gaveWay.length).toBeGreaterThan(0);
    expect(
      agents.some((a) => a.logs.filter((l) => l.msg === 'gang did not fill by its deadline').length > 1),
    ).toBe(false);
  }, 90_000);

  it('a SIGKILLed host fails the attempt within the liveness timeout; the retry resumes on another host', async () => {
    const trialId = trials[2]!;
    const job = await q.add('train', spanning(trialId, 2), { ...JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await waitUntil(async () => ((await db.runs.trial(trialId)).currentStep >= 50 ? true : null), 'step 50');
    const live = agents.filter((x) => x.id === 'gang-a' || x.id === 'gang-b');
    const joiner = live.find((x) =>
      x.logs.some((l) => l.msg === 'joined a gang' && String(l.gang).startsWith(job.id!)),
    )!;
    const coordinator = live.find((x) => x !== joiner)!;
    const rankPids = joiner.logs.find((l) => l.msg === 'gang ranks launched')!.pids as number[];
    const killedAt = Date.now();
    joiner.proc.kill('SIGKILL');
    await joiner.exited;
    await waitUntil(() => rankPids.every((p) => !pidAlive(p)), 'host 1’s rank to die with its agent', 5_000);
    // Host 0's rank sees the loss through gloo (a reset connection fails the all-reduce at once) or,
    // when nothing resets (a host cut off), through host 1's seat liveness: either way the attempt fails
    // within the stated timeout, the liveness TTL plus one renewal period (README).
    const failed = await coordinator.waitForLog(
      (l) => l.msg === 'job failed' && l.jobId === job.id,
      20_000,
      'the coordinator to fail the attempt',
    );
    expect(Number(failed.time) - killedAt).toBeLessThan(LIVENESS_MS + LIVENESS_MS / 3 + 1_000);
    expect(failed.unrecoverable).toBe(false);
    // A third host takes the dead one's core.
    hostAgent('host-c', coreOf.get(joiner.id)!, 'gang-c');
    const done = await finished(job.id!);
    expect(done.returnvalue, done.failedReason).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
    expect((await db.runs.trial(trialId)).attempt).toBe(2);
    const starts = agents.flatMap((x) =>
      x.logs.filter((l) => l.msg === 'trainer started' && l.jobId === job.id),
    );
    expect(starts.at(-1)?.resumedFrom).toBeGreaterThan(0);
    expect(await lossSteps(trialId)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(await maxWeightDiff(finalDir(trials[0]!), finalDir(trialId))).toBeLessThan(1e-6);
  }, 90_000);

  it('a frozen host (no reset connection) is found by its expired seat liveness in Redis', async () => {
    const trialId = trials[3]!;
    const job = await q.add('train', spanning(trialId, 3), { ...JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await waitUntil(async () => ((await db.runs.trial(trialId)).currentStep >= 50 ? true : null), 'step 50');
    const live = agents.filter(
      (x) =>
        ['gang-a', 'gang-b', 'gang-c'].includes(x.id) &&
        x.proc.exitCode === null &&
        x.proc.signalCode === null,
    );
    const joined = (x: AgentHandle) =>
      x.logs.find((l) => l.msg === 'gang ranks launched' && String(l.gang).startsWith(job.id!));
    const joiner = live.find(joined)!;
    const coordinator = live.find((x) => x !== joiner)!;
    const pids = [joiner.proc.pid!, ...(joined(joiner)!.pids as number[])];
    const frozenAt = Date.now();
    for (const p of pids) process.kill(p, 'SIGSTOP');
    const stop = await coordinator.waitForLog(
      (l) => l.msg === 'stopping the trial' && (l.reason as { kind?: string })?.kind === 'peer',
      20_000,
      'the coordinator to see host 1 frozen',
    );
    // The liveness TTL plus one renewal period, well before the c10d timeout (10 s here).
    expect(Number(stop.time) - frozenAt).toBeLessThan(LIVENESS_MS + LIVENESS_MS / 3 + 1_000);
    const failed = await coordinator.waitForLog(
      (l) => l.msg === 'job failed' && l.jobId === job.id,
      10_000,
      'the attempt to fail',
    );
    expect(String(failed.err)).toMatch(/a host of the trial was lost: host rank\(s\) 1 stopped renewing/);
    for (const p of pids) process.kill(p, 'SIGKILL');
    await joiner.exited;
    hostAgent('host-d', coreOf.get(joiner.id)!, 'gang-d');
    const done = await finished(job.id!);
    expect(done.returnvalue, done.failedReason).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
    expect(await maxWeightDiff(finalDir(trials[0]!), finalDir(trialId))).toBeLessThan(1e-6);
  }, 60_000);

  it('a SIGKILLed host 0 (the job holder): its lock expires, the job resumes on the agents left', async () => {
    const trialId = trials[4]!;
    const job = await q.add('train', spanning(trialId, 4), { ...JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await waitUntil(async () => ((await db.runs.trial(trialId)).currentStep >= 50 ? true : null), 'step 50');
    const live = agents.filter((x) => x.proc.exitCode === null && x.proc.signalCode === null);
    const holder = live.find((x) => x.logs.some((l) => l.msg === 'gang opened' && l.jobId === job.id))!;
    const seat = live.find((x) =>
      x.logs.some((l) => l.msg === 'gang ranks launched' && String(l.gang).startsWith(job.id!)),
    )!;
    holder.proc.kill('SIGKILL');
    await holder.exited;
    // Host 1's rank does not outlive host 0's: gloo fails it, the seat ends and frees the slot.
    await seat.waitForLog(
      (l) => l.msg === 'gang ranks exited' && String(l.gang).startsWith(job.id!),
      LIVENESS_MS + LIVENESS_MS / 3 + 1_000,
      'host 1’s rank to stop',
    );
    hostAgent('host-e', coreOf.get(holder.id)!, 'gang-e');
    const done = await finished(job.id!);
    expect(done.returnvalue, done.failedReason).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
    expect(await lossSteps(trialId)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(await maxWeightDiff(finalDir(trials[0]!), finalDir(trialId))).toBeLessThan(1e-6);
  }, 60_000);

  it('a host shut down gracefully: every rank stops after one step, the job is released, not failed', async () => {
    const trialId = trials[5]!;
    const job = await q.add('train', spanning(trialId, 5), { ...JOB_OPTIONS, jobId: jobIds.train(trialId) });
    await waitUntil(async () => ((await db.runs.trial(trialId)).currentStep >= 50 ? true : null), 'step 50');
    const live = agents.filter((x) => x.proc.exitCode === null && x.proc.signalCode === null);
    const holder = live.find((x) => x.logs.some((l) => l.msg === 'gang opened' && l.jobId === job.id))!;
    const seat = live.find((x) => x !== holder)!;
    seat.proc.kill('SIGTERM');
    expect(await seat.exited).toEqual({ code: 0, signal: null });
    const released = await holder.waitForLog(
      (l) => l.msg === 'job released back to the queue' && l.jobId === job.id,
      20_000,
      'the job released',
    );
    expect(released.reason).toBe('another host of the trial shut down');
    hostAgent('host-f', coreOf.get(seat.id)!, 'gang-f');
    const done = await finished(job.id!);
    expect(done.returnvalue, done.failedReason).toMatchObject({ status: 'SUCCEEDED', step: STEPS });
    // Only the completion counts (BullMQ): the release used no attempt, a failure would make it 2.
    expect(done.attemptsMade).toBe(1);
    expect(await maxWeightDiff(finalDir(trials[0]!), finalDir(trialId))).toBeLessThan(1e-6);
  }, 60_000);
});
