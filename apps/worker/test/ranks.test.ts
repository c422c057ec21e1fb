// A trial of K ranks goes through the launcher: K pinned rank processes (one
// per slot) that die with their agent. Data-parallel training sums gradients
// in the same order as one rank with K micro-batches, so the 2-rank trial must
// end with the same weights as the 1-rank one, even when its agent is killed
// halfway and another agent resumes it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDb, type Db } from '@mpo/db';
import { jobIds, TRAIN_JOB_OPTIONS, trainQueue } from '@mpo/queue';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
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

let db: Db;
let redis: Redis;
let s: Scratch;
const agents: AgentHandle[] = [];
beforeAll(() => {
  db = createDb(DATABASE_URL);
  redis = newRedis();
  s = scratch('ranks');
});
afterAll(async () => {
  for (const a of agents) await a.dispose();
  await deleteKeys(redis, s.prefix);
  redis.disconnect();
  await db.close();
});

const finished = (q: Queue, id: string) => finishedJob(q, id, 'job', 100_000);

it('trains 2 ranks on 2 slots like 1 rank, across a SIGKILL of its agent', async () => {
  const q = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
  const { runId, trialIds } = await newTrials(db, 2, 'ranks');
  const [one, two] = trialIds as [string, string];
  const training = { steps: 300, checkpointEvery: 25, batchSize: 2, microBatch: 1 };
  const env = agentEnv(s, { MPO_DEVICES: 'cpu:2' });
  const a = startAgent(env, 'ranks-a');
  agents.push(a);
  try {
    await q.add('train', trainData(runId, one, { training }), {
      ...TRAIN_JOB_OPTIONS,
      jobId: jobIds.train(one),
    });
    await finished(q, jobIds.train(one));
    const job = await q.add(
      'train',
      trainData(runId, two, { trialIndex: 1, training, slots: { device: 'cpu', count: 2 } }),
      { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(two) },
    );
    await waitUntil(async () => ((await db.runs.trial(two)).currentStep >= 100 ? true : null), 'step 100');
    const launched = a.logs.find((l) => l.jobId === job.id && l.msg === 'trainer launched')!;
    expect(launched).toMatchObject({ ranks: 2, slots: [0, 1] });
    const pids = launched.pids as number[];
    expect(pids).toHaveLength(2);
    a.proc.kill('SIGKILL');
    await a.exited;
    await waitUntil(() => pids.every((p) => !pidAlive(p)), 'both ranks to die with their agent', 5_000);

    const b = startAgent(env, 'ranks-b');
    agents.push(b);
    const done = await finished(q, job.id!);
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED', step: 300 });
    expect(
      b.logs.find((l) => l.jobId === job.id && l.msg === 'trainer started')?.resumedFrom,
    ).toBeGreaterThan(0);
    const hash = (t: string) =>
      JSON.parse(readFileSync(join(s.artifactRoot, runId, t, 'final/training.json'), 'utf8')).weightsHash;
    expect(hash(two)).toBe(hash(one));
    const loss = await db.metrics.series(two, 'loss', { language: null });
    expect(loss.map((p) => p.step)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // The same losses, up to the float32 all-reduce that sums the ranks' shares.
    const ref = await db.metrics.series(one, 'loss', { language: null });
    const relErr = loss.map((p, i) => Math.abs(p.value - ref[i]!.value) / Math.abs(ref[i]!.value));
    expect(Math.max(...relErr)).toBeLessThan(1e-6);
  } finally {
    await q.close();
  }
});
