import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertNoEviction,
  decideAtRung,
  fits,
  isCancelled,
  RedisPolicyError,
  readAgents,
  recordRungResult,
  redisKeys,
  removeHeartbeat,
  setCancelKey,
  writeHeartbeat,
} from '../src/index.js';
import { REDIS_URL, testRedis } from './redis-helpers.js';

const t = testRedis('redis');
afterAll(() => t.cleanup());

const beat = (id: string, lastSeen = Date.now()) => ({
  id,
  host: 'gpu-box-1',
  pid: 4242,
  version: '0.1.0',
  startedAt: lastSeen - 60_000,
  lastSeen,
  queues: ['train-gpu', 'eval-gpu'],
  slots: [{ device: 'gpu' as const, total: 4, free: 2, ids: ['0', '1', '2', '3'] }],
  running: [],
});

describe('agent heartbeats', () => {
  it('are listed while fresh and pruned once expired', async () => {
    await writeHeartbeat(t.redis, t.prefix, beat('a1'));
    await writeHeartbeat(t.redis, t.prefix, beat('a2'), 1);
    expect((await readAgents(t.redis, t.prefix)).map((a) => a.id).sort()).toEqual(['a1', 'a2']);
    const a1 = (await readAgents(t.redis, t.prefix)).find((a) => a.id === 'a1')!;
    expect(a1.slots).toEqual(beat('a1').slots);
    expect(a1.pid).toBe(4242);
    await new Promise((r) => setTimeout(r, 1_200));
    expect((await readAgents(t.redis, t.prefix)).map((a) => a.id)).toEqual(['a1']);
    expect(await t.redis.zscore(redisKeys(t.prefix).agents, 'a2')).toBeNull();
    await removeHeartbeat(t.redis, t.prefix, 'a1');
    expect(await readAgents(t.redis, t.prefix)).toEqual([]);
  });

  it('fits a slot requirement now, later or never', () => {
    const slots = beat('x').slots;
    expect(fits({ device: 'gpu', count: 2 }, slots)).toBe('now');
    expect(fits({ device: 'gpu', count: 3 }, slots)).toBe('later');
    expect(fits({ device: 'gpu', count: 5 }, slots)).toBe('never');
    expect(fits({ device: 'cpu', count: 1 }, slots)).toBe('never');
  });
});

describe('cancel key', () => {
  it('is set under the prefix with a TTL', async () => {
    expect(await isCancelled(t.redis, t.prefix, 'run-1')).toBe(false);
    await setCancelKey(t.redis, t.prefix, 'run-1');
    expect(await isCancelled(t.redis, t.prefix, 'run-1')).toBe(true);
    expect(await t.redis.ttl(`${t.prefix}:cancel:run-1`)).toBeGreaterThan(0);
  });
});

describe('ASHA rung store', () => {
  it('records each trial once, in arrival order, atomically under concurrency', async () => {
    const values = [0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6];
    const decisions = await Promise.all(
      values.map((value, i) =>
        decideAtRung(t.redis, t.prefix, {
          runId: 'r',
          trialId: `t${i}`,
          rung: 0,
          step: 10,
          value,
          mode: 'max',
          reductionFactor: 3,
          metric: 'rg',
        }),
      ),
    );
    const stored = await recordRungResult(t.redis, t.prefix, 'r', 0, 'probe', 0);
    expect(stored.map((r) => r.order)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Each decision compared the trial with exactly the results that arrived before it.
    decisions.forEach((d, i) => {
      const mine = stored.find((r) => r.trialId === `t${i}`)!;
      expect(d.considered).toBe(mine.order);
    });
    // One connection pipelines the calls, so arrival order is call order: t0 (first) and t1 (0.9 beats 0.1)
    // continue; every later one ranks below the top max(1, floor(n/3)) of those before it.
    expect(stored.slice(0, 9).map((r) => r.trialId)).toEqual(values.map((_, i) => `t${i}`));
    expect(decisions.map((d) => d.action)).toEqual(['promote', 'promote', ...Array(7).fill('stop')]);
    // Re-recording (a resumed trial) keeps the first value and gives the same decision.
    const again = await decideAtRung(t.redis, t.prefix, {
      runId: 'r',
      trialId: 't4',
      rung: 0,
      step: 10,
      value: -100,
      mode: 'max',
      reductionFactor: 3,
      metric: 'rg',
    });
    expect(again).toEqual(decisions[4]);
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('maxmemory-policy check', () => {
  it('accepts noeviction and rejects anything else with a clear error', async () => {
    const ok = new Redis(REDIS_URL);
    await expect(assertNoEviction(ok, REDIS_URL)).resolves.toBeUndefined();
    ok.disconnect();
    const port = await freePort();
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'allkeys-lru',
      ],
      { stdio: 'ignore' },
    );
    try {
      const lru = new Redis({ port, host: '127.0.0.1', retryStrategy: (n) => (n > 50 ? null : 100) });
      lru.on('error', () => {}); // connection refused until the server is up
      await new Promise((r) => lru.once('ready', r));
      const err = await assertNoEviction(lru, `redis://127.0.0.1:${port}`).catch((e) => e);
      expect(err).toBeInstanceOf(RedisPolicyError);
      expect(err.message).toMatch(/maxmemory-policy "allkeys-lru".*noeviction/);
      lru.disconnect();
    } finally {
      child.kill('SIGTERM');
    }
  });
});
