import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDb,
  type Db,
  InvalidInputError,
  MAX_METRIC_BATCH,
  type MetricInput,
  NotFoundError,
} from '../src/index.js';
import { DATABASE_URL, query } from './helpers.js';

let db: Db;
beforeAll(() => {
  db = createDb(DATABASE_URL);
});
afterAll(async () => db.close());

const newRun = (trials = 3, extra: Partial<Parameters<Db['runs']['create']>[0]> = {}) =>
  db.runs.create({
    name: `test-${randomUUID().slice(0, 8)}`,
    spec: { method: 'mpo', search: { strategy: 'grid' } },
    trials: Array.from({ length: trials }, (_, i) => ({
      hyperparameters: { lr: 10 ** -(i + 4), beta: 0.1 * (i + 1) },
    })),
    ...extra,
  });

describe('runs', () => {
  it('creates a run with its trials and outbox messages in one transaction', async () => {
    const { run, created } = await newRun(3, {
      outbox: (runId, trialIds) =>
        trialIds.map((trialId) => ({ kind: 'train', payload: { runId, trialId } })),
    });
    expect(created).toBe(true);
    expect(run.trials.map((t) => t.index)).toEqual([0, 1, 2]);
    expect(run.trials.every((t) => t.status === 'PENDING')).toBe(true);
    const outbox = await query<{ kind: string; payload: { trialId: string } }>(
      DATABASE_URL,
      'SELECT kind, payload FROM "Outbox" WHERE "runId" = $1 ORDER BY id',
      [run.id],
    );
    expect(outbox.map((o) => o.payload.trialId)).toEqual(run.trials.map((t) => t.id));
  });

  it('writes nothing when any part of the transaction fails', async () => {
    const name = `atomic-${randomUUID()}`;
    await expect(
      db.runs.create({
        name,
        spec: {},
        trials: [{ hyperparameters: { lr: 1 } }],
        outbox: () => {
          throw new Error('boom while building the outbox');
        },
      }),
    ).rejects.toThrow(/boom/);
    const rows = await query(DATABASE_URL, 'SELECT id FROM "Run" WHERE name = $1', [name]);
    expect(rows).toHaveLength(0);
  });

  it('returns the same run for the same idempotency key and owner', async () => {
    const owner = await db.tokens.issue('idem-test');
    const key = randomUUID();
    const a = await newRun(2, { ownerTokenId: owner.identity.id, idempotencyKey: key });
    const b = await newRun(5, { ownerTokenId: owner.identity.id, idempotencyKey: key });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.run.id).toBe(a.run.id);
    expect(b.run.trials).toHaveLength(2);
    const [c, d] = await Promise.all([
      newRun(1, { ownerTokenId: owner.identity.id, idempotencyKey: `${key}-race` }),
      newRun(1, { ownerTokenId: owner.identity.id, idempotencyKey: `${key}-race` }),
    ]);
    expect(c.run.id).toBe(d.run.id);
  });

  it('scopes reads to the owner and reports unknown ids as not found', async () => {
    const alice = await db.tokens.issue('alice');
    const bob = await db.tokens.issue('bob');
    const { run } = await newRun(1, { ownerTokenId: alice.identity.id });
    expect((await db.runs.get(run.id, { ownerTokenId: alice.identity.id })).id).toBe(run.id);
    await expect(db.runs.get(run.id, { ownerTokenId: bob.identity.id })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(db.runs.get(randomUUID())).rejects.toBeInstanceOf(NotFoundError);
    await expect(db.runs.get('not-a-uuid')).rejects.toBeInstanceOf(NotFoundError);
    const listed = await db.runs.list({ ownerTokenId: alice.identity.id });
    expect(listed.items.map((r) => r.id)).toEqual([run.id]);
  });
});

describe('lazily created trials (materialize)', () => {
  const plan = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => ({ hyperparameters: { seed: from + i } }));

  it('keeps a window of unstarted trials; agents topping up at once never create a trial twice', async () => {
    const { run } = await newRun(1, { trialCount: 10 });
    // Eight agents at once: the row lock serializes them, the first creates 3 (window 4), the rest none.
    const results = await Promise.all(Array.from({ length: 8 }, () => db.runs.materialize(run.id, 4, plan)));
    expect(results.map((r) => r.trials.length).sort()).toEqual([0, 0, 0, 0, 0, 0, 0, 3]);
    let trials = (await db.runs.get(run.id)).trials;
    expect(trials.map((t) => [t.index, (t.hyperparameters as { seed?: number }).seed ?? null])).toEqual([
      [0, null],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    // Trial 1 starts: one more is created (the starting trial no longer counts as unstarted).
    expect((await db.runs.materialize(run.id, 4, plan, trials[1]!.id)).trials.map((t) => t.index)).toEqual([
      4,
    ]);
    // 'all' (the sweep job) creates the rest, never past the run's trial count.
    expect((await db.runs.materialize(run.id, 'all', plan)).trials.map((t) => t.index)).toEqual([
      5, 6, 7, 8, 9,
    ]);
    expect((await db.runs.materialize(run.id, 'all', plan)).trials).toEqual([]);
    trials = (await db.runs.get(run.id)).trials;
    expect(trials.map((t) => t.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('creates a cancelled run’s leftovers at once, CANCELLED; counts uncreated trials in the quota', async () => {
    const token = (await db.tokens.issue('lazy-quota')).identity;
    const { run } = await newRun(1, { trialCount: 6, rankSteps: 600, ownerTokenId: token.id });
    await db.runs.updateTrial(run.trials[0]!.id, { totalSteps: 100 });
    // One created (100 rank-steps), five not created yet: 500 more planned.
    expect(await db.tokens.usage(token.id)).toEqual({ activeTrials: 6, rankSteps: 600 });
    await db.runs.requestCancel(run.id);
    expect(await db.tokens.usage(token.id)).toEqual({ activeTrials: 0, rankSteps: 0 });
    const r = await db.runs.materialize(run.id, 2, plan);
    expect(r.cancelled).toBe(true);
    expect(r.trials.map((t) => t.index)).toEqual([1, 2, 3, 4, 5]);
    expect((await db.runs.get(run.id)).trials.every((t) => t.status === 'CANCELLED')).toBe(true);
  });
});

describe('metrics', () => {
  it('appends 10,000 metrics in batches and reads a series back ordered by step', async () => {
    const { run } = await newRun(1);
    const trialId = run.trials[0]!.id;
    const rows: MetricInput[] = [];
    // Interleave names and shuffle steps so ordering is the database's work.
    for (let step = 0; step < 2_500; step++) {
      rows.push({ trialId, step, name: 'loss', value: 1 / (step + 1) });
      rows.push({ trialId, step, name: 'rg', language: 'zh', value: step * 0.001 });
      rows.push({ trialId, step, name: 'rg', language: 'sw', value: -step * 0.001 });
      rows.push({ trialId, step, name: 'lr', value: 1e-5 });
    }
    rows.reverse();
    expect(rows).toHaveLength(10_000);
    const inserted = await db.metrics.append(rows, 3_000);
    expect(inserted).toBe(10_000);
    expect(await db.metrics.count(trialId)).toBe(10_000);

    const loss = await db.metrics.series(trialId, 'loss');
    expect(loss).toHaveLength(2_500);
    expect(loss.map((p) => p.step)).toEqual([...Array(2_500).keys()]);
    expect(loss[9]!.value).toBeCloseTo(0.1, 12);
    const zh = await db.metrics.series(trialId, 'rg', { language: 'zh', sinceStep: 2_489 });
    expect(zh.map((p) => p.step)).toEqual([
      2_490, 2_491, 2_492, 2_493, 2_494, 2_495, 2_496, 2_497, 2_498, 2_499,
    ]);
    expect(await db.metrics.seriesNames(trialId)).toEqual([
      { name: 'loss', language: null },
      { name: 'lr', language: null },
      { name: 'rg', language: 'sw' },
      { name: 'rg', language: 'zh' },
    ]);
  });

  it('stores each step once when a batch is delivered twice', async () => {
    const { run } = await newRun(1);
    const trialId = run.trials[0]!.id;
    const batch = [0, 1, 2].map((step) => ({ trialId, step, name: 'loss', value: step }));
    expect(await db.metrics.append(batch)).toBe(3);
    expect(await db.metrics.append([...batch, { trialId, step: 3, name: 'loss', value: 3 }])).toBe(1);
    expect((await db.metrics.series(trialId, 'loss')).map((p) => p.value)).toEqual([0, 1, 2, 3]);
  });

  it('rejects batches over the bind-parameter limit and bad rows before writing', async () => {
    const { run } = await newRun(1);
    const trialId = run.trials[0]!.id;
    await expect(db.metrics.append([], MAX_METRIC_BATCH + 1)).rejects.toBeInstanceOf(InvalidInputError);
    const bad = [
      { trialId, step: 0, name: 'loss', value: 1 },
      { trialId, step: -1, name: 'loss', value: 1 },
    ];
    await expect(db.metrics.append(bad)).rejects.toThrow(/metrics\[1\]\.step/);
    expect(await db.metrics.count(trialId)).toBe(0);
    // The largest allowed batch goes through in one statement.
    const big = Array.from({ length: MAX_METRIC_BATCH }, (_, step) => ({
      trialId,
      step,
      name: 'x',
      value: step,
    }));
    expect(await db.metrics.append(big, MAX_METRIC_BATCH)).toBe(MAX_METRIC_BATCH);
  });
});

describe('deleting a run', () => {
  it('removes its trials, metrics, checkpoints, evaluations and outbox rows', async () => {
    const { run } = await newRun(2, { outbox: (runId) => [{ kind: 'flow', payload: { runId } }] });
    const trialId = run.trials[0]!.id;
    await db.metrics.append([{ trialId, step: 1, name: 'loss', value: 0.5 }]);
    const ckpt = await db.artifacts.recordCheckpoint({
      trialId,
      step: 1,
      path: '/tmp/x',
      bytes: 10,
      sha256: 'a'.repeat(64),
    });
    await db.artifacts.recordEvaluations([
      {
        trialId,
        checkpointId: ckpt.id,
        benchmark: 'multijail',
        language: 'zh',
        metric: 'asr',
        value: 0.3,
        n: 10,
      },
    ]);
    await db.runs.delete(run.id);
    for (const [table, col, id] of [
      ['Run', 'id', run.id],
      ['Trial', 'runId', run.id],
      ['Metric', 'trialId', trialId],
      ['Checkpoint', 'trialId', trialId],
      ['Evaluation', 'trialId', trialId],
      ['Outbox', 'runId', run.id],
    ] as const) {
      expect(
        await query(DATABASE_URL, `SELECT 1 FROM "${table}" WHERE "${col}" = $1`, [id]),
        table,
      ).toHaveLength(0);
    }
    await expect(db.runs.delete(run.id)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('evaluations', () => {
  it('stores each result once when an eval job runs twice, also concurrently and without a checkpoint', async () => {
    const { run } = await newRun(1);
    const trialId = run.trials[0]!.id;
    const ckpt = await db.artifacts.recordCheckpoint({
      trialId,
      step: 1,
      path: '/tmp/x',
      bytes: 10,
      sha256: 'b'.repeat(64),
    });
    const results = (value: number) =>
      [ckpt.id, null].flatMap((checkpointId) =>
        ['zh', 'ko'].map((language) => ({
          trialId,
          checkpointId,
          benchmark: 'multijail',
          language,
          metric: 'asr',
          value,
          n: 10,
        })),
      );
    await Promise.all([
      db.artifacts.recordEvaluations(results(0.3)),
      db.artifacts.recordEvaluations(results(0.4)),
    ]);
    await db.artifacts.recordEvaluations(results(0.5));
    const rows = await db.artifacts.evaluations({ trialId });
    expect(rows).toHaveLength(4);
    // First write wins: one job's values, never a mix with the later duplicate.
    expect(new Set(rows.map((r) => r.value)).size).toBe(1);
    expect([0.3, 0.4]).toContain(rows[0]!.value);
  });
});

describe('tokens', () => {
  it('stores only a hash and verifies secrets', async () => {
    const { secret, identity } = await db.tokens.issue('t');
    const rows = await query<{ tokenHash: string }>(
      DATABASE_URL,
      'SELECT "tokenHash" FROM "ApiToken" WHERE id = $1',
      [identity.id],
    );
    expect(rows[0]!.tokenHash).not.toContain(secret);
    expect(rows[0]!.tokenHash).toMatch(/^[0-9a-f]{64}$/);
    expect((await db.tokens.verify(secret))?.id).toBe(identity.id);
    expect(await db.tokens.verify(`${secret}x`)).toBeNull();
    await db.tokens.revoke(identity.id);
    expect(await db.tokens.verify(secret)).toBeNull();
  });
});

describe('latest metrics of running trials', () => {
  it('returns each running trial’s newest value and ignores trials not running', async () => {
    const { run } = await newRun(3);
    const [a, b, c] = run.trials.map((t) => t.id) as [string, string, string];
    await db.runs.updateTrial(a, { status: 'RUNNING' });
    await db.runs.updateTrial(b, { status: 'RUNNING' });
    await db.runs.updateTrial(c, { status: 'SUCCEEDED' });
    await db.metrics.append([
      { trialId: a, step: 1, name: 'tokensPerSec', value: 50 },
      { trialId: a, step: 2, name: 'tokensPerSec', value: 100 },
      { trialId: b, step: 7, name: 'tokensPerSec', value: 300 },
      { trialId: b, step: 8, name: 'loss', value: 1 },
      { trialId: c, step: 9, name: 'tokensPerSec', value: 999 },
    ]);
    const rows = (await db.metrics.latestOfRunningTrials('tokensPerSec')).filter((r) =>
      [a, b, c].includes(r.trialId),
    );
    expect(rows.sort((x, y) => x.value - y.value)).toEqual([
      { trialId: a, value: 100, step: 2 },
      { trialId: b, value: 300, step: 7 },
    ]);
  });
});
