import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db, NotFoundError, OUTBOX_KINDS, OUTBOX_RETRY } from '../src/index.js';
import { DATABASE_URL } from './helpers.js';

let db: Db;
// Rows of this file carry their own prefix, and drains are scoped to it, so other suites' rows are left alone.
const prefix = `db-test-${randomUUID().slice(0, 8)}`;
beforeAll(() => {
  db = createDb(DATABASE_URL);
});
afterAll(async () => db.close());

const newRun = (trials = 3, ownerTokenId: string | null = null) =>
  db.runs.create({
    name: `outbox-${randomUUID().slice(0, 8)}`,
    spec: {},
    ownerTokenId,
    trials: Array.from({ length: trials }, () => ({ hyperparameters: {} })),
    outbox: (runId) => [{ kind: OUTBOX_KINDS.flow, payload: { prefix, runId } }],
  });

describe('outbox', () => {
  it('publishes a run, marks its rows published and its trials QUEUED, once', async () => {
    const { run } = await newRun();
    const seen: string[] = [];
    const r = await db.outbox.drain({ runId: run.id, publish: async (row) => void seen.push(row.kind) });
    expect(seen).toEqual(['flow']);
    expect(r.published).toHaveLength(1);
    expect((await db.runs.get(run.id)).trials.every((t) => t.status === 'QUEUED')).toBe(true);
    expect(await db.outbox.pendingCount({ runId: run.id })).toBe(0);
    const again = await db.outbox.drain({ runId: run.id, publish: async () => void seen.push('again') });
    expect(again.published).toHaveLength(0);
    expect(seen).toEqual(['flow']);
  });

  it('keeps failed rows pending with the error, and publishes them on a drain after their backoff', async () => {
    const { run } = await newRun(1);
    const retry = { ...OUTBOX_RETRY, baseSeconds: 0.5 };
    const r = await db.outbox.drain({
      runId: run.id,
      retry,
      publish: async () => {
        throw new Error('Redis is away');
      },
    });
    expect(r.failed.map((f) => f.error.message)).toEqual(['Redis is away']);
    const [row] = await db.outbox.forRun(run.id);
    expect(row).toMatchObject({ publishedAt: null, attempts: 1, lastError: 'Redis is away', deadAt: null });
    expect(row!.nextAttemptAt).not.toBeNull();
    expect((await db.runs.get(run.id)).trials[0]!.status).toBe('PENDING');
    // Within the backoff the row is not claimed; after it, it is.
    expect((await db.outbox.drain({ runId: run.id, publish: async () => {} })).published).toHaveLength(0);
    await new Promise((res) => setTimeout(res, 800));
    await db.outbox.drain({ runId: run.id, publish: async () => {} });
    expect(await db.outbox.pendingCount({ runId: run.id })).toBe(0);
  });

  it('marks freshly written rows published in one statement (the fast path), once', async () => {
    const { run, outboxIds } = await newRun(2);
    expect(outboxIds).toHaveLength(1);
    expect(await db.outbox.markPublished(outboxIds)).toBe(1);
    expect((await db.runs.get(run.id)).trials.map((t) => t.status)).toEqual(['QUEUED', 'QUEUED']);
    // Already published (say by a concurrent drain): nothing to mark, no error.
    expect(await db.outbox.markPublished(outboxIds)).toBe(0);
    const { run: failed, outboxIds: ids } = await newRun(1);
    await db.outbox.markFailed(ids, 'Redis away');
    expect((await db.outbox.forRun(failed.id))[0]).toMatchObject({
      publishedAt: null,
      attempts: 1,
      lastError: 'Redis away',
    });
  });

  it('lets concurrent drains share the rows without publishing one twice', async () => {
    const runs = await Promise.all(Array.from({ length: 6 }, () => newRun(1)));
    const ids = new Set(runs.map((r) => r.run.id));
    const published: string[] = [];
    const publish = async (row: { runId: string }) => {
      if (!ids.has(row.runId)) throw new Error('not ours'); // leave other tests' rows alone
      await new Promise((r) => setTimeout(r, 20));
      published.push(row.runId);
    };
    await Promise.all([1, 2, 3].map(() => db.outbox.drain({ limit: 1000, prefix, publish })));
    for (const id of ids) {
      await db.outbox.drain({ runId: id, publish });
    }
    expect(published.sort()).toEqual([...ids].sort());
  });
});

describe('cancel', () => {
  it('cancels trials that have not started, leaves running ones to their worker, writes the outbox once', async () => {
    const { run } = await newRun(3);
    await db.runs.updateTrial(run.trials[0]!.id, { status: 'RUNNING' });
    await db.runs.setStatus(run.id, 'RUNNING');
    const outbox = (runId: string, at: Date) => [
      { kind: OUTBOX_KINDS.cancel, payload: { prefix, runId, requestedAt: at.toISOString() } },
    ];
    const first = await db.runs.requestCancel(run.id, { outbox });
    expect(first).toMatchObject({ status: 'RUNNING', cancelled: 2, stopping: 1, finished: false });
    const second = await db.runs.requestCancel(run.id, { outbox });
    expect(second.cancelRequestedAt).toEqual(first.cancelRequestedAt);
    const rows = await db.outbox.forRun(run.id);
    expect(rows.filter((r) => r.kind === 'cancel')).toHaveLength(1);
    const after = await db.runs.get(run.id);
    expect(after.trials.map((t) => t.status)).toEqual(['RUNNING', 'CANCELLED', 'CANCELLED']);
    expect(after.cancelRequestedAt).not.toBeNull();
  });

  it('cancels the run at once when nothing runs, honours ownership, leaves finished runs alone', async () => {
    const { run } = await newRun(2);
    const owner = randomUUID();
    await expect(db.runs.requestCancel(run.id, { ownerTokenId: owner })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    const r = await db.runs.requestCancel(run.id, { ownerTokenId: null });
    expect(r).toMatchObject({ status: 'CANCELLED', cancelled: 2, stopping: 0 });
    expect((await db.runs.get(run.id)).finishedAt).not.toBeNull();
    const { run: done } = await newRun(1);
    await db.runs.setStatus(done.id, 'SUCCEEDED');
    expect(await db.runs.requestCancel(done.id)).toMatchObject({ status: 'SUCCEEDED', finished: true });
    await expect(db.runs.requestCancel(randomUUID())).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('trial status counts', () => {
  it('counts every status', async () => {
    const counts = await db.runs.trialStatusCounts();
    expect(Object.keys(counts).sort()).toEqual(
      ['CANCELLED', 'FAILED', 'PENDING', 'QUEUED', 'RUNNING', 'STOPPED', 'SUCCEEDED'].sort(),
    );
    expect(counts.PENDING).toBeGreaterThan(0);
  });
});
