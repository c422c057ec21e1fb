// The metric buffer against a real Postgres reached through a proxy the test
// cuts: batching by rows and by time, nothing lost and nothing duplicated
// while the database is unreachable.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createDb, type Db } from '@mpo/db';
import { metricRows, type TrainerStep } from '@mpo/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { ProtocolFollower } from '../src/protocol.js';
import { TrialWriter } from '../src/trial-writer.js';
import { DATABASE_URL, newTrials, scratch, TcpProxy, waitUntil } from './helpers.js';

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
    expect(fatal[0]!.message).toMatch(/foreign key constraint/i);
    expect(w.fatal).toBe(fatal[0]);
    expect(w.failures).toBe(0); // not retried
    w.addRows(metricRows(step(3))); // ignored: nothing more reaches Postgres
    expect(w.full).toBe(false); // the trainer's output keeps flowing to its protocol file
    expect(await w.close()).toEqual({ unwritten: 4 });
    expect(fatal).toHaveLength(1);
  });

  it('a long outage costs flat memory: the protocol file is the backlog (heap measured after GC)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heapMb = () => {
      gc();
      return process.memoryUsage().heapUsed / 2 ** 20;
    };
    // 6,000 steps of 18 rows (loss, lr, a reward gap in 16 languages): 108,000 rows, written as a trainer would.
    const languages = Array.from({ length: 16 }, (_, i) => `l${i}`);
    const line = (n: number) =>
      JSON.stringify({
        type: 'step',
        step: n,
        totalSteps: 6000,
        loss: 1 / n,
        metrics: { lr: 0.001, rg: Object.fromEntries(languages.map((l, i) => [l, n + i / 100])) },
      });
    const file = join(scratch('backlog').dir, 'protocol.jsonl');
    writeFileSync(file, `${Array.from({ length: 6000 }, (_, i) => line(i + 1)).join('\n')}\n`);
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
    await proxy.open();
    const viaProxy = createDb(proxy.url(), { connectTimeoutMs: 500 });
    /** Follows the file into a writer, gated like train-run.ts; returns the heap growth once it stops reading. */
    const backlogGrowth = async (trialId: string, maxRows: number) => {
      const w = new TrialWriter(viaProxy, trialId, {
        flushRows: 2_000,
        flushMs: 50,
        maxBackoffMs: 200,
        maxRows,
        log,
      });
      const f = new ProtocolFollower(
        file,
        (p) => {
          if (p.ok && p.message.type === 'step') w.addRows(metricRows(p.message));
        },
        10,
        () => !w.full,
      );
      const before = heapMb();
      f.start();
      await waitUntil(
        () => w.full || w.pendingRows >= 108_000,
        'reading to the bound or the end',
        30_000,
        20,
      );
      await sleep(500); // the gate holds: nothing more is read
      return { w, f, growth: heapMb() - before };
    };
    try {
      await proxy.cut();
      // Without a bound (the buffer as it was): the whole backlog in memory.
      const { trialIds } = await newTrials(db, 2);
      const unbounded = await backlogGrowth(trialIds[0]!, Number.POSITIVE_INFINITY);
      const lost = new AbortController();
      lost.abort();
      await unbounded.f.stop(lost.signal);
      await unbounded.w.close(lost.signal);
      // With the bound: 2,000 rows, the rest waits in the file.
      const bounded = await backlogGrowth(trialIds[1]!, 2_000);
      expect(bounded.w.full).toBe(true);
      expect(bounded.w.peakRows).toBeLessThanOrEqual(2_000 + 4_000); // + one 64 KiB read of lines
      process.stdout.write(
        `backlog of 108,000 rows during an outage: heap +${unbounded.growth.toFixed(1)} MB unbounded, ` +
          `+${bounded.growth.toFixed(1)} MB bounded (peak ${bounded.w.peakRows} rows held)\n`,
      );
      expect(unbounded.growth).toBeGreaterThan(15);
      expect(bounded.growth).toBeLessThan(unbounded.growth / 4);
      // Postgres back: the follower reads on as the writer drains; every row lands once.
      await proxy.open();
      await bounded.f.stop();
      expect(await bounded.w.close()).toEqual({ unwritten: 0 });
      expect(await db.metrics.count(trialIds[1]!)).toBe(108_000);
      expect(bounded.w.inserted).toBe(108_000);
    } finally {
      await proxy.cut();
      await viaProxy.close();
    }
  }, 120_000);
});
