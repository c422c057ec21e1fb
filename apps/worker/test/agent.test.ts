// The agent as a real process against real Redis and Postgres, with the fake
// `mpo` (fixtures/fake-mpo.mjs) as its child: heartbeats, the train and eval
// processors, cancellation, ASHA, retries, a whole flow, and slot fitting.
import { join } from 'node:path';
import { createDb, type Db } from '@mpo/db';
import {
  buildRunFlow,
  EVAL_JOB_OPTIONS,
  evalQueue,
  jobIds,
  parseRunSpec,
  QUEUES,
  readAgents,
  setCancelKey,
  TRAIN_JOB_OPTIONS,
  TRIAL_REF_VERSION,
  trainQueue,
  trialRows,
} from '@mpo/queue';
import { FlowProducer, type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentHandle,
  agentEnv,
  DATABASE_URL,
  deleteKeys,
  evalData,
  FAKE_MPO,
  finishedJob,
  newRedis,
  newTrials,
  type Scratch,
  scratch,
  startAgent,
  trainData,
  waitUntil,
} from './helpers.js';
import { eventFiles, hparamsOf, readEvents, scalarsOf } from './tfevents-reader.js';

let db: Db;
let redis: Redis;
beforeAll(() => {
  db = createDb(DATABASE_URL);
  redis = newRedis();
});
afterAll(async () => {
  await db.close();
  redis.disconnect();
});

const FAKE_CLI = JSON.stringify([process.execPath, FAKE_MPO]);

const queues = new Map<string, Queue>();
afterAll(async () => {
  for (const q of queues.values()) await q.close();
});

/** Waits until `job` is completed or failed, and returns it re-read. */
function finished(job: Job, what: string, timeoutMs = 60_000): Promise<Job> {
  const key = `${job.queueQualifiedName}`;
  let q = queues.get(key);
  if (!q) {
    q = new Queue(job.queueName, { connection: redis, prefix: job.queueQualifiedName.split(':')[0] });
    queues.set(key, q);
  }
  return finishedJob(q, job.id!, what, timeoutMs);
}

/**
 * Waits for `job` and asserts it completed; when it failed instead, the
 * assertion names the failure reason and the agent's log lines for that job,
 * so an intermittent failure says what happened.
 */
async function completed(job: Job, what: string, agent: AgentHandle, timeoutMs = 60_000): Promise<Job> {
  const done = await finished(job, what, timeoutMs);
  const state = await done.getState();
  if (state !== 'completed') {
    const lines = agent.logs.filter((l) => JSON.stringify(l).includes(job.id!)).slice(-20);
    throw new Error(
      `${what} (${job.queueName}/${job.id}) ended ${state} after ${done.attemptsMade} attempt(s): ${done.failedReason}\n` +
        `agent log for it:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`,
    );
  }
  return done;
}

describe('agent with a fake trainer', () => {
  let s: Scratch;
  let agent: AgentHandle;
  let train: Queue;
  let evals: Queue;

  beforeAll(async () => {
    s = scratch('agent');
    train = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
    evals = new Queue(evalQueue('cpu'), { connection: redis, prefix: s.prefix });
    agent = startAgent(agentEnv(s, { MPO_CLI_COMMAND: FAKE_CLI, MPO_DEVICES: 'cpu:1', LOG_LEVEL: 'debug' }));
    await agent.waitForLog((l) => l.msg === 'agent started', 30_000, 'start-up');
  });
  afterAll(async () => {
    await agent.dispose();
    await train.close();
    await evals.close();
    await deleteKeys(redis, s.prefix);
  });

  const addTrain = (data: { trialId: string; [field: string]: unknown }, opts = {}) =>
    train.add('train', data, { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(data.trialId), ...opts });

  it('advertises its slots and queues in a heartbeat', async () => {
    const [hb] = await waitUntil(async () => {
      const a = await readAgents(redis, s.prefix);
      return a.length ? a : null;
    }, 'a heartbeat');
    expect(hb).toMatchObject({
      id: agent.id,
      pid: agent.proc.pid,
      queues: ['train-cpu', 'eval-cpu', 'sweep'],
      slots: [{ device: 'cpu', total: 1, free: 1 }],
      running: [],
    });
    expect(Date.now() - hb!.lastSeen).toBeLessThan(5_000);
  });

  it('runs a train job: progress, metrics, checkpoints and the trial row', async () => {
    const { runId, trialIds } = await newTrials(db, 1);
    const job = await addTrain(
      trainData(runId, trialIds[0]!, { training: { steps: 12, checkpointEvery: 5 } }),
    );
    // While it runs the heartbeat lists it with its slot.
    const hb = await waitUntil(async () => {
      const [a] = await readAgents(redis, s.prefix);
      return a?.running.length ? a : null;
    }, 'the job in the heartbeat');
    expect(hb.running[0]).toMatchObject({
      jobId: job.id,
      runId,
      trialId: trialIds[0],
      slots: { device: 'cpu', count: 1 },
    });
    expect(hb.slots[0]!.free).toBe(0);
    const done = await finished(job, 'train job');
    expect(await done.getState()).toBe('completed');
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED', step: 12, bestMetric: 1 / 12 });
    expect(done.progress).toMatchObject({ step: 12, totalSteps: 12, loss: 1 / 12 });
    const trial = await db.runs.trial(trialIds[0]!);
    expect(trial).toMatchObject({
      status: 'SUCCEEDED',
      attempt: 1,
      currentStep: 12,
      totalSteps: 12,
      error: null,
    });
    expect(trial.bestMetric).toBeCloseTo(1 / 12);
    // loss, lr, rg/en, rg/zh per step, plus the held-out eval at the last step (2 rows).
    expect(await db.metrics.count(trialIds[0]!)).toBe(12 * 4 + 2);
    // The same rows as TensorBoard scalars (name/lang tags), with the hyperparameters and the end status.
    const stored = new Map<string, number>();
    for (const { name, language } of await db.metrics.seriesNames(trialIds[0]!))
      for (const p of await db.metrics.series(trialIds[0]!, name, { language }))
        stored.set(`${language ? `${name}/${language}` : name}@${p.step}`, p.value);
    const tb = eventFiles(join(s.artifactRoot, runId, trialIds[0]!, 'tensorboard')).flatMap(readEvents);
    const scalars = scalarsOf(tb);
    expect([...scalars.keys()].sort()).toEqual([...stored.keys()].sort());
    // TensorBoard keeps the trainer's float64; Postgres hands back 15 significant digits.
    for (const [k, v] of stored) expect(scalars.get(k), k).toBeCloseTo(v, 12);
    const hp = hparamsOf(tb);
    expect(hp.get('_hparams_/session_start_info')?.session_start_info).toMatchObject({
      group_name: runId,
      hparams: { method: { string_value: 'dpo' }, 'training.steps': { number_value: 12 } },
    });
    expect(hp.get('_hparams_/session_end_info')?.session_end_info?.status).toBe(1); // SUCCESS
    expect((await db.artifacts.checkpoints(trialIds[0]!)).map((c) => c.step)).toEqual([5, 10, 12]);
    expect((await db.runs.get(runId)).status).toBe('RUNNING');
    // BullMQ records per-minute throughput for the API (`metrics` worker option).
    const m = await train.getMetrics('completed');
    expect(m.meta.count).toBeGreaterThanOrEqual(1);
  });

  it('stops a running trial when its run is cancelled, and never starts a cancelled one', async () => {
    const { runId, trialIds } = await newTrials(db, 2);
    const first = await addTrain(
      trainData(runId, trialIds[0]!, { training: { steps: 2000, checkpointEvery: 0 } }),
    );
    await waitUntil(
      async () => ((await db.runs.trial(trialIds[0]!)).currentStep >= 5 ? true : null),
      'steps',
    );
    await setCancelKey(redis, s.prefix, runId);
    const done = await finished(first, 'cancelled job');
    expect(done.returnvalue).toMatchObject({ status: 'CANCELLED' });
    const trial = await db.runs.trial(trialIds[0]!);
    expect(trial.status).toBe('CANCELLED');
    expect(trial.currentStep).toBeLessThan(2000);
    // The child checkpointed the step it stopped at.
    const ckpt = await db.artifacts.latestCheckpoint(trialIds[0]!);
    expect(ckpt?.step).toBe(trial.currentStep);

    const second = await addTrain(trainData(runId, trialIds[1]!, { trialIndex: 1 }));
    const done2 = await finished(second, 'second job');
    expect(done2.returnvalue).toMatchObject({ status: 'CANCELLED', step: 0 });
    expect((await db.runs.trial(trialIds[1]!)).status).toBe('CANCELLED');
    expect(await db.metrics.count(trialIds[1]!)).toBe(0);
  });

  it('stops trials at ASHA rungs with the rung and the reason', async () => {
    const { runId, trialIds } = await newTrials(db, 3);
    const asha = {
      rungs: [3],
      // Far beyond the rung, so a stop at step 3 shows as an early end even on a loaded
      // machine, where the fake's 20 ms steps run on while the decision is taken.
      maxSteps: 60,
      reductionFactor: 3,
      metric: 'heldout/reward_gap_mean',
      mode: 'max' as const,
    };
    // The fake's held-out gap grows with the seed: 50 first (alone: promoted), 10 (worse: stopped), 90 (best: promoted).
    const jobs = [];
    for (const [i, seed] of [50, 10, 90].entries()) {
      jobs.push(
        await addTrain(
          trainData(runId, trialIds[i]!, {
            trialIndex: i,
            asha,
            totalSteps: 60,
            training: { steps: 60, seed },
          }),
        ),
      );
    }
    const results = [];
    for (const j of jobs) results.push((await finished(j, 'asha job')).returnvalue);
    expect(results.map((r) => r.status)).toEqual(['SUCCEEDED', 'STOPPED', 'SUCCEEDED']);
    expect(results[1]).toMatchObject({
      stoppedAtRung: 0,
      reason: expect.stringMatching(/^rung 0 \(step 3\)/),
    });
    const stopped = await db.runs.trial(trialIds[1]!);
    expect(stopped).toMatchObject({ status: 'STOPPED', stoppedAtRung: 0 });
    expect(stopped.stopReason).toMatch(/ranks 2 of 2; only the top 1/);
    expect(stopped.currentStep).toBeLessThan(60);
    expect(await redis.hlen(`${s.prefix}:asha:${runId}:0`)).toBe(4); // 3 trials + the arrival counter
  });

  it('retries a failing trial, then fails it with the trainer error', async () => {
    const { runId, trialIds } = await newTrials(db, 1);
    const job = await addTrain(trainData(runId, trialIds[0]!, { training: { seed: 1_000_003 } }), {
      attempts: 2,
      backoff: { type: 'fixed', delay: 200 },
    });
    await waitUntil(async () => ((await db.runs.trial(trialIds[0]!)).error ? true : null), 'first failure');
    const done = await finished(job, 'failing job');
    expect(await done.getState()).toBe('failed');
    expect(done.failedReason).toBe('fake failure at step 3');
    expect(done.attemptsMade).toBe(2);
    expect(await db.runs.trial(trialIds[0]!)).toMatchObject({
      status: 'FAILED',
      attempt: 2,
      error: 'fake failure at step 3',
    });
  });

  it('fails a payload it cannot read without retrying it', async () => {
    const { runId, trialIds } = await newTrials(db, 1);
    const job = await addTrain({
      ...trainData(runId, trialIds[0]!),
      model: { kind: 'path', path: '../../outside' },
    });
    const done = await finished(job, 'bad job');
    expect(await done.getState()).toBe('failed');
    expect(done.attemptsMade).toBe(1);
    expect(done.failedReason).toMatch(/model "..\/..\/outside": must stay inside the root/);
  });

  it('fails a trial reference whose run spec cannot rebuild the job, without retrying it', async () => {
    const { runId, trialIds } = await newTrials(db, 1); // its stored spec is {test: true}
    const ref = {
      v: TRIAL_REF_VERSION,
      runId,
      trialId: trialIds[0]!,
      trialIndex: 0,
      params: {},
      slots: { device: 'cpu', count: 1 },
    };
    const done = await finished(await addTrain(ref), 'bad reference');
    expect(await done.getState()).toBe('failed');
    expect(done.attemptsMade).toBe(1);
    expect(done.failedReason).toContain(`invalid spec of run ${runId}: spec: `);
  });

  it('records evaluation results, skips unfinished trials, and explains a missing eval command', async () => {
    const { runId, trialIds } = await newTrials(db, 3);
    const trained = await addTrain(trainData(runId, trialIds[0]!, { training: { steps: 3 } }));
    await completed(trained, 'train job', agent);
    const ok = await evals.add('eval', evalData(runId, trialIds[0]!, { languages: ['en', 'zh', 'ko'] }), {
      ...EVAL_JOB_OPTIONS,
      jobId: jobIds.eval(trialIds[0]!),
    });
    expect((await completed(ok, 'eval', agent)).returnvalue).toEqual({ status: 'EVALUATED', evaluations: 3 });
    const rows = await db.artifacts.evaluations({ trialId: trialIds[0]! });
    expect(rows.map((r) => [r.benchmark, r.language, r.metric, r.value, r.n])).toEqual([
      ['multijail', 'en', 'asr', 0.2, 5],
      ['multijail', 'ko', 'asr', 0.2, 5],
      ['multijail', 'zh', 'asr', 0.2, 5],
    ]);
    expect(rows[0]!.checkpointId).toBe((await db.artifacts.latestCheckpoint(trialIds[0]!))!.id);
    // The generations behind each ASR, stored and linked to its evaluation row.
    const gens = await db.generations.list({ runId, trialId: trialIds[0]! });
    expect(gens.items.map((g) => [g.language, g.verdict, g.prompt])).toEqual([
      ['en', 'safe', 'fake prompt (en)'],
      ['ko', 'unsafe', 'fake prompt (ko)'],
      ['zh', 'unsafe', 'fake prompt (zh)'],
    ]);
    const asrId = new Map(rows.map((r) => [r.language, r.id]));
    for (const g of gens.items) expect(g.evaluationId).toBe(asrId.get(g.language));
    expect(gens.items[0]!.checkpointId).toBe(rows[0]!.checkpointId);
    // ... and as TensorBoard scalars at the trial's last step, beside its training curves.
    const tb = eventFiles(join(s.artifactRoot, runId, trialIds[0]!, 'tensorboard')).flatMap(readEvents);
    expect(scalarsOf(tb).get('eval/multijail/asr/ko@3')).toBe(0.2);

    await db.runs.updateTrial(trialIds[1]!, { status: 'STOPPED', stoppedAtRung: 0 });
    const skip = await evals.add('eval', evalData(runId, trialIds[1]!), { jobId: jobIds.eval(trialIds[1]!) });
    expect((await finished(skip, 'skipped eval')).returnvalue).toEqual({
      status: 'SKIPPED',
      evaluations: 0,
      reason: 'trial is STOPPED',
    });

    await db.runs.updateTrial(trialIds[2]!, { status: 'SUCCEEDED' });
    await db.artifacts.recordCheckpoint({
      trialId: trialIds[2]!,
      step: 1,
      path: '/x',
      bytes: 1,
      sha256: 'c'.repeat(64),
    });
    const missing = await evals.add('eval', evalData(runId, trialIds[2]!, { judge: 'fake-missing' }), {
      ...EVAL_JOB_OPTIONS,
      jobId: jobIds.eval(trialIds[2]!),
    });
    const failed = await finished(missing, 'eval without the command');
    expect(await failed.getState()).toBe('failed');
    expect(failed.attemptsMade).toBe(1); // unrecoverable: not retried
    // Was /no `eval` command/: the worker's special case for a CLI without `eval` is gone (every CLI has
    // it). The meaning holds: a usage exit (2) fails for good, and the reason carries the child's stderr.
    expect(failed.failedReason).toMatch(/mpo eval exited with code 2; stderr:\nmpo: unknown command 'eval'/);
  });

  it('runs a whole flow: train → eval → the run finalized', async () => {
    const { spec, trials } = parseRunSpec(
      {
        name: 'flow',
        model: 'tiny.json',
        data: 'builtin:golden-pairs',
        dominantLanguage: 'en',
        targetLanguages: ['zh'],
        method: 'dpo',
        search: { strategy: 'grid', space: { 'training.seed': [7, 8] }, metric: 'loss', mode: 'min' },
        eval: { benchmarks: ['multijail'], languages: ['en', 'zh'] },
        training: { steps: 4, batchSize: 2, microBatch: 1, cutoff: 64 },
      },
      { modelRoot: s.modelRoot, dataRoot: s.dataRoot },
    );
    const { run } = await db.runs.create({
      name: 'flow',
      spec: spec as never,
      trials: trials.map((t) => ({
        hyperparameters: t.hyperparameters as never,
        totalSteps: t.totalSteps ?? 0,
      })),
    });
    const flow = new FlowProducer({ connection: redis, prefix: s.prefix });
    const tree = await flow.add(
      buildRunFlow(
        run.id,
        spec,
        run.trials.map((t, i) => ({ trialId: t.id, plan: trials[i]! })),
      ),
    );
    await flow.close();
    const done = await finished(tree.job, 'the run job', 90_000);
    expect(await done.getState()).toBe('completed');
    expect(done.returnvalue).toMatchObject({
      runId: run.id,
      status: 'SUCCEEDED',
      trials: { SUCCEEDED: 2 },
      best: { metric: 0.25 },
    });
    expect((await db.runs.get(run.id)).status).toBe('SUCCEEDED');
    expect(await db.artifacts.evaluations({ runId: run.id })).toHaveLength(4);
    expect(tree.job.queueName).toBe(QUEUES.sweep);
  });

  /** A run as POST /runs stores it: the run's planned trial count, its first trial and its jobs only. */
  async function lazyRun(space: Record<string, unknown>, name: string) {
    const { spec, trials } = parseRunSpec(
      {
        name,
        model: 'tiny.json',
        data: 'builtin:golden-pairs',
        dominantLanguage: 'en',
        targetLanguages: ['zh'],
        method: 'dpo',
        search: { strategy: 'grid', space, metric: 'loss', mode: 'min' },
        eval: { benchmarks: ['multijail'], languages: ['en'] },
        training: { steps: 2, batchSize: 2, microBatch: 1, cutoff: 64 },
      },
      { modelRoot: s.modelRoot, dataRoot: s.dataRoot },
    );
    const { run } = await db.runs.create({
      name,
      spec: spec as never,
      trialCount: trials.length,
      trials: trialRows(spec, 0, 1) as never,
    });
    const tree = buildRunFlow(
      run.id,
      spec,
      [{ trialId: run.trials[0]!.id, plan: trials[0]! }],
      trials.length,
    );
    return { run, spec, trials, tree };
  }

  it('creates a run’s trials lazily: each once, all trained, then the run finalized', async () => {
    const { run, trials, tree } = await lazyRun({ 'training.seed': [1, 2, 3, 4, 5, 6, 7] }, 'lazy');
    expect((await db.runs.get(run.id)).trials).toHaveLength(1);
    const flow = new FlowProducer({ connection: redis, prefix: s.prefix });
    const added = await flow.add(tree);
    await flow.close();
    const done = await finished(added.job, 'the run job', 120_000);
    expect(await done.getState()).toBe('completed');
    expect(done.returnvalue).toMatchObject({ runId: run.id, status: 'SUCCEEDED', trials: { SUCCEEDED: 7 } });
    const after = await db.runs.get(run.id);
    // Every planned trial exactly once, in plan order, each with its own point.
    expect(after.trials.map((t) => t.index)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(after.trials.map((t) => (t.hyperparameters as Record<string, unknown>)['training.seed'])).toEqual(
      trials.map((t) => t.params['training.seed']),
    );
    expect(await db.artifacts.evaluations({ runId: run.id })).toHaveLength(7);
    expect(agent.logs.some((l) => l.msg === 'created the run’s next trials' && l.runId === run.id)).toBe(
      true,
    );
  });

  it('the sweep job creates the trials left when no agent did, and waits for them before it finalizes', async () => {
    const { run, tree } = await lazyRun({ 'training.seed': [1, 2, 3, 4, 5, 6] }, 'lazy-sweep');
    await db.runs.markQueued([run.trials[0]!.id]);
    // Trial 0's train job is refused at dispatch (invalid slots) before any agent creates a trial: its
    // eval fails with it, and the sweep job runs with five trials never created.
    const eval0 = tree.children![0]!;
    const train0 = eval0.children![0]!;
    train0.data = { ...train0.data, slots: { device: 'cpu', count: 0 } };
    const flow = new FlowProducer({ connection: redis, prefix: s.prefix });
    const added = await flow.add(tree);
    await flow.close();
    const done = await finished(added.job, 'the run job', 120_000);
    expect(await done.getState()).toBe('completed');
    expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED', trials: { SUCCEEDED: 5, QUEUED: 1 } });
    expect((await db.runs.get(run.id)).trials.map((t) => t.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(
      agent.logs.some((l) => l.msg === 'trials left to run; waiting for them' && l.runId === run.id),
    ).toBe(true);
  });

  it('a cancelled run’s uncreated trials are created CANCELLED before it finalizes (no jobs)', async () => {
    const { run, tree } = await lazyRun({ 'training.seed': [1, 2, 3, 4, 5] }, 'lazy-cancel');
    const at = new Date();
    await db.runs.requestCancel(run.id);
    await setCancelKey(redis, s.prefix, run.id, at);
    const flow = new FlowProducer({ connection: redis, prefix: s.prefix });
    const added = await flow.add(tree);
    await flow.close();
    const done = await finished(added.job, 'the run job', 60_000);
    expect(done.returnvalue).toMatchObject({ status: 'CANCELLED', trials: { CANCELLED: 5 } });
    const after = await db.runs.get(run.id);
    expect(after.trials.map((t) => [t.index, t.status])).toEqual(
      [0, 1, 2, 3, 4].map((i) => [i, 'CANCELLED']),
    );
    expect(await redis.exists(`${s.prefix}:${trainQueue('cpu')}:${jobIds.train(after.trials[4]!.id)}`)).toBe(
      0,
    );
  });
});

describe('slot fitting', () => {
  it('leaves a job needing 2 slots to an agent that has them, without failing it', async () => {
    const s = scratch('slots');
    const train = new Queue(trainQueue('cpu'), { connection: redis, prefix: s.prefix });
    const small = startAgent(agentEnv(s, { MPO_CLI_COMMAND: FAKE_CLI, MPO_DEVICES: 'cpu:1' }), 'small');
    let big: AgentHandle | null = null;
    try {
      await small.waitForLog((l) => l.msg === 'agent started', 30_000, 'start-up');
      const { runId, trialIds } = await newTrials(db, 2);
      const wide = await train.add(
        'train',
        trainData(runId, trialIds[0]!, { slots: { device: 'cpu', count: 2 }, training: { steps: 3 } }),
        { ...TRAIN_JOB_OPTIONS, jobId: jobIds.train(trialIds[0]!) },
      );
      const narrow = await train.add(
        'train',
        trainData(runId, trialIds[1]!, { trialIndex: 1, training: { steps: 3 } }),
        {
          ...TRAIN_JOB_OPTIONS,
          jobId: jobIds.train(trialIds[1]!),
        },
      );
      await finished(narrow, 'the 1-slot job');
      // The small agent looked at the wide job at least once and put it back.
      await small.waitForLog(
        (l) =>
          l.jobId === wide.id &&
          l.msg === 'job does not fit the free slots; putting it back' &&
          l.fit === 'never',
        15_000,
        'the wide job put back',
      );
      const w = (await train.getJob(wide.id!))!;
      // The small agent keeps fetching the job and putting it back, so a single
      // read can land in the moment it holds it ('active'); between fetches the
      // job must sit in the queue again.
      await expect.poll(() => w.getState(), { timeout: 10_000, interval: 25 }).toMatch(/^(delayed|waiting)$/);
      expect(w.attemptsMade).toBe(0);
      expect(small.logs.some((l) => l.jobId === wide.id && l.msg === 'job started')).toBe(false);
      expect((await db.runs.trial(trialIds[0]!)).status).toBe('PENDING');

      big = startAgent(agentEnv(s, { MPO_CLI_COMMAND: FAKE_CLI, MPO_DEVICES: 'cpu:2' }), 'big');
      const done = await finished(wide, 'the 2-slot job', 60_000);
      expect(done.returnvalue).toMatchObject({ status: 'SUCCEEDED' });
      expect(big.logs.find((l) => l.jobId === wide.id && l.msg === 'job started')).toMatchObject({
        slots: [0, 1],
      });
    } finally {
      await small.dispose();
      await big?.dispose();
      await train.close();
      await deleteKeys(redis, s.prefix);
    }
  });
});
