// Enqueue-to-start latency of a train job: one idle agent (a real process,
// dist/main.js) whose training child is a stub (fixtures/fake-mpo.mjs via
// MPO_CLI_COMMAND, one 1 ms step), so the figures are the platform's own
// overhead, not the model's loading. Jobs are added one at a time to an idle
// agent, each after the previous finished, and timed from `queue.add` to:
//   taken    BullMQ moved it to active on the agent (job.processedOn)
//   running  the Trial row is RUNNING in Postgres (Trial.startedAt)
//   child    the stub trainer process has started (it writes Date.now() first thing)
//
//   node apps/worker/dist/bench/latency.js [--jobs 200] [--json]
// Needs Redis and Postgres (REDIS_URL, DATABASE_URL), like the agent.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDb } from '@mpo/db';
import {
  CONTRACT_VERSION,
  DEFAULT_REDIS_URL,
  isJobFinished,
  jobIds,
  TRAIN_JOB_OPTIONS,
  type TrainJobData,
  trainQueue,
} from '@mpo/queue';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { REPO_ROOT } from '../config.js';

const { values } = parseArgs({
  options: { jobs: { type: 'string', default: '200' }, json: { type: 'boolean', default: false } },
});
const jobs = Number(values.jobs);
const redisUrl = process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
const prefix = `mpo-bench-${randomUUID().slice(0, 8)}`;
const dir = mkdtempSync(join(tmpdir(), 'mpo-worker-bench-'));
const roots = { model: join(dir, 'models'), data: join(dir, 'data'), artifacts: join(dir, 'artifacts') };
for (const d of Object.values(roots)) mkdirSync(d, { recursive: true });
writeFileSync(join(roots.model, 'stub.json'), JSON.stringify({ init: { vocabSize: 8 }, seed: 0 }));

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};

async function main() {
  // Long: a benchmark script: setup, the timed loop and the report, in order.
  const db = createDb();
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(trainQueue('cpu'), { connection: redis, prefix });
  const { run } = await db.runs.create({
    name: 'bench-enqueue-latency',
    spec: { bench: true },
    trials: Array.from({ length: jobs }, (_, i) => ({ hyperparameters: { i } })),
  });
  const agent: ChildProcess = spawn(process.execPath, [join(REPO_ROOT, 'apps/worker/dist/main.js')], {
    env: {
      ...process.env,
      MPO_QUEUE_PREFIX: prefix,
      MPO_DEVICES: 'cpu:1',
      MPO_MODEL_ROOT: roots.model,
      MPO_DATA_ROOT: roots.data,
      MPO_ARTIFACT_ROOT: roots.artifacts,
      MPO_CLI_COMMAND: JSON.stringify([
        process.execPath,
        join(REPO_ROOT, 'apps/worker/fixtures/fake-mpo.mjs'),
      ]),
      FAKE_STEP_MS: '1',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const taken: number[] = [];
  const running: number[] = [];
  const child: number[] = [];
  try {
    // Wait for the agent's heartbeat, then let it settle into its blocking fetch.
    while ((await redis.zcard(`${prefix}:agents`)) === 0) await sleep(50);
    await sleep(500);
    for (const [i, trial] of run.trials.entries()) {
      // The golden pairs are never read: the stub trainer only reads the config.
      const data: TrainJobData = {
        v: CONTRACT_VERSION,
        runId: run.id,
        trialId: trial.id,
        trialIndex: i,
        method: 'dpo',
        hyperparameters: {},
        params: {},
        model: { kind: 'path', path: 'stub.json' },
        data: [{ kind: 'builtin', id: 'golden-pairs' }],
        dominantLanguage: 'en',
        targetLanguages: ['zh'],
        training: {
          steps: 1,
          batchSize: 1,
          microBatch: 1,
          cutoff: 16,
          checkpointEvery: 0,
          seed: 1,
          learningRate: 1e-5,
          warmupRatio: 0,
        },
        totalSteps: 1,
        slots: { device: 'cpu', count: 1 },
        objective: { metric: 'loss', mode: 'min' },
      };
      const job = await queue.add('train', data, { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(trial.id) });
      const enqueued = job.timestamp;
      let state = '';
      while (!isJobFinished(state)) {
        await sleep(20);
        state = await job.getState();
      }
      if (state === 'failed')
        throw new Error(`job ${job.id} failed: ${(await queue.getJob(job.id!))?.failedReason}`);
      const done = (await queue.getJob(job.id!))!;
      const t = await db.runs.trial(trial.id);
      const started = JSON.parse(
        readFileSync(join(roots.artifacts, run.id, trial.id, 'fake-started.json'), 'utf8'),
      ) as { at: number };
      taken.push(done.processedOn! - enqueued);
      running.push(t.startedAt!.getTime() - enqueued);
      child.push(started.at - enqueued);
    }
  } finally {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await db.runs.delete(run.id);
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const row = (name: string, xs: number[]) => ({
    stage: name,
    p50: quantile(xs, 0.5),
    p90: quantile(xs, 0.9),
    p99: quantile(xs, 0.99),
    max: Math.max(...xs),
  });
  const result = {
    jobs,
    stages: [
      row('taken (BullMQ active)', taken),
      row('Trial RUNNING in Postgres', running),
      row('trainer process started', child),
    ],
  };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    process.stdout.write(
      `enqueue-to-start latency of a train job, ${jobs} jobs, idle agent, stub trainer (ms)\n`,
    );
    process.stdout.write('| stage | p50 | p90 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |\n');
    for (const r of result.stages)
      process.stdout.write(`| ${r.stage} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} |\n`);
  }
}

await main();
