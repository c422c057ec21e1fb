// The metric buffer against a real Postgres reached through a proxy the test
// cuts: batching by rows and by time, nothing lost and nothing duplicated
// while the database is unreachable.
import { setTimeout as sleep } from 'node:timers/promises';
import { createDb, type Db } from '@mpo/db';
import { metricRows, type TrainerStep } from '@mpo/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { TrialWriter } from '../src/trial-writer.js';
import { DATABASE_URL, newTrials, TcpProxy, waitUntil } from './helpers.js';

const log = createLogger('silent');
let db: Db;
beforeAll(() => {
  db = createDb(DATABASE_URL);
});
afterAll(async () => db.close());

const step = (n: number): TrainerStep => ({
  type: 'step',
  step: n,
  totalSteps: 1000,
  loss: 1 / n,
  metrics: { loss: 1 / n, lr: 0.001, rg: { en: n, zh: -n } },
});

describe('TrialWriter', () => {
  it('writes a batch when enough rows wait, and the rest after flushMs', async () => {
    const { trialIds } = await newTrials(db, 1);
    const id = trialIds[0]!;
    const w = new TrialWriter(db, id, { flushRows: 40, flushMs: 300, maxBackoffMs: 500, log });
    for (let i = 1; i <= 10; i++) w.addRows(metricRows(step(i))); // 4 distinct rows a step ("loss" twice)
    await waitUntil(async () => (await db.metrics.count(id)) === 40, '40 rows', 5_000, 20);
    w.addRows(metricRows(step(11)));
    await sleep(100);
    expect(await db.metrics.count(id)).toBe(40);
    await waitUntil(async () => (await db.metrics.count(id)) === 44, 'the timed flush', 5_000, 20);
    w.addCheckpoint({ step: 11, path: '/x/11', bytes: 5, sha256: 'b'.repeat(64) });
    w.setProgress({ currentStep: 11, bestMetric: 0.25 });
    expect(await w.close()).toEqual({ unwritten: 0 });
    expect((await db.artifacts.checkpoints(id)).map((c) => c.step)).toEqual([11]);
    expect(await db.runs.trial(id)).toMatchObject({ currentStep: 11, bestMetric: 0.25 });
    expect(w.inserted).toBe(44);
  });

  it('keeps buffering while Postgres is unreachable and loses nothing', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
    await proxy.open();
    const viaProxy = createDb(proxy.url(), { connectTimeoutMs: 1_000 });
    const { trialIds } = await newTrials(db, 1);
    const id = trialIds[0]!;
    const w = new TrialWriter(viaProxy, id, { flushRows: 20, flushMs: 50, maxBackoffMs: 300, log });
    try {
      for (let i = 1; i <= 50; i++) w.addRows(metricRows(step(i)));
      await waitUntil(async () => (await db.metrics.count(id)) >= 100, 'writes before the cut', 5_000, 20);
      await proxy.cut();
      // Re-send some steps (a resumed child re-emits them), add new ones, while the database is away.
      for (let i = 40; i <= 120; i++) w.addRows(metricRows(step(i)));
      w.setProgress({ currentStep: 120 });
      await waitUntil(() => w.failures >= 2, 'failed writes', 10_000, 20);
      expect(w.pendingRows).toBeGreaterThan(0);
      await sleep(300);
      await proxy.open();
      const closed = await w.close();
      expect(closed).toEqual({ unwritten: 0 });
    } finally {
      await proxy.cut();
      await viaProxy.close();
    }
    expect(await db.metrics.count(id)).toBe(120 * 4);
    const rows = await db.metrics.series(id, 'rg', { language: 'zh' });
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    expect(rows.every((r) => r.value === -r.step)).toBe(true);
    expect((await db.runs.trial(id)).currentStep).toBe(120);
  });

  it('gives up only when told the job is lost', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
    await proxy.open();
    const viaProxy = createDb(proxy.url(), { connectTimeoutMs: 500 });
    await proxy.cut();
    const { trialIds } = await newTrials(db, 1);
    const w = new TrialWriter(viaProxy, trialIds[0]!, { flushRows: 1, flushMs: 10, maxBackoffMs: 100, log });
    w.addRows(metricRows(step(1)));
    const lost = new AbortController();
    const closing = w.close(lost.signal);
    await sleep(300);
    lost.abort();
    expect(await closing).toEqual({ unwritten: 4 });
    await viaProxy.close();
  });

  it('holds at most maxRows in memory during an outage, then writes them all once', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
    await proxy.open();
    const viaProxy = createDb(proxy.url(), { connectTimeoutMs: 500 });
    const { trialIds } = await newTrials(db, 1);
    const id = trialIds[0]!;
    const w = new TrialWriter(viaProxy, id, {
      flushRows: 20,
      flushMs: 20,
      maxBackoffMs: 200,
      maxRows: 100,
      log,
    });
    try {
      await proxy.cut();
      // The caller's loop (train-run.ts through ProtocolFollower's gate): add only while not full.
      let next = 1;
      const feeding = (async () => {
        while (next <= 300) {
          await w.room();
          w.addRows(metricRows(step(next++)));
        }
      })();
      await waitUntil(() => w.full, 'the bound', 5_000, 10);
      await sleep(500);
      expect(w.full).toBe(true);
      expect(next).toBeLessThanOrEqual(27); // 4 rows a step: 25 steps fill 100 rows, one add may be in progress
      expect(w.peakRows).toBeLessThanOrEqual(100 + 4);
      await proxy.open();
      await feeding;
      expect(await w.close()).toEqual({ unwritten: 0 });
    } finally {
      await proxy.cut();
      await viaProxy.close();
    }
    expect(w.peakRows).toBeLessThanOrEqual(104);
    expect(await db.metrics.count(id)).toBe(300 * 4);
  });

  it('stops at a permanent error (the trial was deleted) and reports it, without retrying', async () => {
    const { runId, trialIds } = await newTrials(db, 1);
    const fatal: Error[] = [];
    const w = new TrialWriter(db, trialIds[0]!, {
      flushRows: 4,
      flushMs: 10,
      maxBackoffMs: 100,
      log,
      onFatal: (err) => fatal.push(err),
    });
    w.addRows(metricRows(step(1)));
    await waitUntil(async () => (await db.metrics.count(trialIds[0]!)) === 4, 'the first write', 5_000, 20);
    await db.runs.delete(runId);
    w.addRows(metricRows(step(2)));
    await waitUntil(() => fatal.length > 0, 'the fatal report', 5_000, 20);
    expect(fatal[0]!.message).toMatch(/Foreign key constraint/);
    expect(w.fatal).toBe(fatal[0]);
    expect(w.failures).toBe(0); // not retried
    w.addRows(metricRows(step(3))); // ignored: nothing more reaches Postgres
    expect(w.full).toBe(false); // the trainer's output keeps flowing to its protocol file
    expect(await w.close()).toEqual({ unwritten: 4 });
    expect(fatal).toHaveLength(1);
  });
});
