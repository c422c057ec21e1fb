import { randomUUID } from 'node:crypto';
import { FlowProducer, Queue, UnrecoverableError, Worker } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRunFlow,
  evalJobData,
  evalJobFromRef,
  evalQueue,
  jobIds,
  parseEvalJobData,
  parseRunSpec,
  parseSweepJobData,
  parseTrainJobData,
  parseTrainJobPayload,
  parseTrialJobRef,
  pointOf,
  QUEUES,
  type TrialJobRef,
  trainJobData,
  trainJobFromRef,
  trainQueue,
  trialJobRef,
  WORKER_DEFAULTS,
} from '../src/index.js';
import { roots, validSpec } from './fixtures.js';
import { testRedis } from './redis-helpers.js';

const t = testRedis('flow');
afterAll(() => t.cleanup());

function plannedRun(trials = 3) {
  const spec = validSpec();
  spec.search.space = { beta: [0.5, 1, 1.5].slice(0, trials) } as never;
  const { spec: s, trials: plans } = parseRunSpec(spec, roots());
  const runId = randomUUID();
  const planned = plans.map((plan) => ({ trialId: randomUUID(), plan }));
  return { runId, spec: s, planned, flow: buildRunFlow(runId, s, planned) };
}

describe('run flow', () => {
  it('lands in Redis as run ← eval per trial ← train, with slot requirements', async () => {
    const { runId, spec, planned, flow } = plannedRun(3);
    const producer = new FlowProducer({ connection: t.redis, prefix: t.prefix });
    await producer.add(flow);
    const tree = await producer.getFlow({ id: jobIds.run(runId), queueName: QUEUES.sweep, prefix: t.prefix });
    expect(tree.job.name).toBe('run');
    expect(parseSweepJobData(tree.job.data)).toMatchObject({ runId, trialCount: 3 });
    expect(await tree.job.getState()).toBe('waiting-children');
    expect(tree.children).toHaveLength(3);
    for (const child of tree.children ?? []) {
      expect(child.job.queueName).toBe(evalQueue('cpu'));
      const ev = parseTrialJobRef(child.job.data);
      expect(child.job.id).toBe(jobIds.eval(ev.trialId));
      expect(ev.slots).toEqual({ device: 'cpu', count: 1 });
      expect(child.children).toHaveLength(1);
      const train = child.children![0]!.job;
      expect(train.queueName).toBe(trainQueue('cpu'));
      expect(train.id).toBe(jobIds.train(ev.trialId));
      const ref = parseTrialJobRef(train.data);
      expect(ref.slots).toEqual({ device: 'cpu', count: 2 });
      expect(ref.trialId).toBe(ev.trialId);
      // The job holds the trial's point alone; the rest is rebuilt from the spec, as the job carried it before.
      const p = planned.find((x) => x.trialId === ref.trialId)!;
      expect(ref.params).toEqual(p.plan.params);
      expect(trainJobFromRef(spec, ref)).toEqual(parseTrainJobData(trainJobData(runId, spec, p)));
      expect(evalJobFromRef(spec, ev)).toEqual(parseEvalJobData(evalJobData(runId, spec, p)));
      expect(parseTrainJobPayload(train.data)).toEqual(ref);
      expect(await train.getState()).toBe('waiting');
    }
    expect(new Set(tree.children!.map((c) => (c.job.data as { trialId: string }).trialId))).toEqual(
      new Set(planned.map((p) => p.trialId)),
    );
    // Publishing the same flow again (an outbox retry) adds nothing.
    await producer.add(flow);
    const train = new Queue(trainQueue('cpu'), { connection: t.redis, prefix: t.prefix });
    expect(await train.getJobCountByTypes('waiting')).toBe(3);
    await train.obliterate({ force: true });
    await train.close();
    await producer.close();
  });

  it('rebuilds every trial from the spec as stored (keys reordered like JSONB) and its row', () => {
    const base = validSpec();
    base.search = {
      strategy: 'random',
      space: {
        'training.seed': { type: 'int', min: 0, max: 1000 },
        beta: { type: 'loguniform', min: 0.01, max: 1 },
        'training.learningRate': [1e-5, 3e-5],
      },
      maxTrials: 8,
      metric: 'heldout/reward_gap',
      mode: 'max',
    } as never;
    const { spec, trials } = parseRunSpec(base, roots());
    // Postgres JSONB orders object keys by length, then bytes: the spec the worker reads back.
    const jsonb = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(jsonb)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.entries(v)
                .sort(([a], [b]) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
                .map(([k, x]) => [k, jsonb(x)]),
            )
          : v;
    const stored = jsonb(spec) as typeof spec;
    const runId = randomUUID();
    for (const plan of trials) {
      const t = { trialId: randomUUID(), plan };
      // The point as the publisher reads it back from the Trial row (runs/index.ts trialHyperparameters).
      const row = jsonb({ ...plan.hyperparameters, ...plan.params }) as Record<string, unknown>;
      const ref = trialJobRef(runId, stored, {
        trialId: t.trialId,
        plan: { index: plan.index, params: pointOf(stored, row) },
      });
      expect(trainJobFromRef(stored, ref)).toEqual(trainJobData(runId, spec, t));
      expect(evalJobFromRef(stored, trialJobRef(runId, stored, t, true))).toEqual(
        evalJobData(runId, spec, t),
      );
    }
  });

  it('runs train → eval → run; a failed trial fails its eval but not the run', async () => {
    const { runId, planned, flow } = plannedRun(3);
    const prefix = `${t.prefix}-exec`;
    const producer = new FlowProducer({ connection: t.redis, prefix });
    await producer.add(flow);
    const failing = planned[1]!.trialId;
    const order: string[] = [];
    const opts = { connection: t.redis.duplicate(), prefix, ...WORKER_DEFAULTS };
    const trainW = new Worker<TrialJobRef>(
      trainQueue('cpu'),
      async (job) => {
        order.push(`train ${job.data.trialIndex}`);
        if (job.data.trialId === failing) throw new UnrecoverableError('diverged');
        return { status: 'SUCCEEDED', step: 100, checkpoint: null, bestMetric: 0.5 };
      },
      opts,
    );
    const evalW = new Worker(
      evalQueue('cpu'),
      async (job) => {
        order.push(`eval ${job.data.trialIndex}`);
        return { status: 'EVALUATED', evaluations: 1 };
      },
      { ...opts, connection: t.redis.duplicate() },
    );
    const workers: Worker[] = [trainW, evalW];
    const runDone = new Promise<{ values: Record<string, unknown>; failures: Record<string, string> }>(
      (resolve) => {
        const runW = new Worker(
          QUEUES.sweep,
          async (job) => {
            const values = await job.getChildrenValues();
            const failures = await job.getIgnoredChildrenFailures();
            resolve({ values, failures });
            return { done: true };
          },
          { ...opts, connection: t.redis.duplicate() },
        );
        workers.push(runW);
      },
    );
    const { values, failures } = await runDone;
    expect(Object.keys(values)).toHaveLength(2);
    expect(Object.keys(failures)).toHaveLength(1);
    expect(Object.keys(failures)[0]).toContain(jobIds.eval(failing));
    const evalQ = new Queue(evalQueue('cpu'), { connection: t.redis, prefix });
    expect(await (await evalQ.getJob(jobIds.eval(failing)))!.getState()).toBe('failed');
    // Every eval ran after its own train job.
    for (const i of [0, 2]) expect(order.indexOf(`eval ${i}`)).toBeGreaterThan(order.indexOf(`train ${i}`));
    expect(order).not.toContain('eval 1');
    await Promise.all(workers.map((w) => w.close()));
    await evalQ.close();
    await producer.close();
    expect(runId).toBeTruthy();
  });
});
