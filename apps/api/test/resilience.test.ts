import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createDb, type Db, OUTBOX_KINDS } from '@mpo/db';
import { buildRunFlow, jobIds, parseRunSpec, parseTrialJobRef, QUEUES } from '@mpo/queue';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DATABASE_URL,
  deleteKeys,
  freePort,
  ownRedis,
  REDIS_URL,
  roots,
  spec,
  TcpProxy,
  testApp,
  until,
} from './helpers.js';

let db: Db;
let redis: Redis;
beforeAll(() => {
  db = createDb(DATABASE_URL);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await db.close();
  redis.disconnect();
});

const redisTarget = { host: '127.0.0.1', port: Number(new URL(REDIS_URL).port || 6379) };
const pgTarget = { host: '127.0.0.1', port: Number(new URL(DATABASE_URL).port || 5432) };

async function flowInRedis(prefix: string, runId: string) {
  const producer = new FlowProducer({ connection: redis, prefix });
  try {
    const tree = await producer.getFlow({ id: jobIds.run(runId), queueName: QUEUES.sweep, prefix });
    return tree?.job ? tree : undefined;
  } finally {
    await producer.close();
  }
}

async function runsNamed(name: string) {
  return (await db.runs.list({ limit: 200 })).items.filter((r) => r.name === name);
}

describe('Redis away', () => {
  it('answers 503 and writes nothing; after recovery runs are created and queued', async () => {
    const proxy = await TcpProxy.start(redisTarget);
    const t = await testApp('redis-down', { redisUrl: `redis://127.0.0.1:${proxy.port}` });
    try {
      await proxy.down();
      const name = `while-down-${randomUUID()}`;
      const res = await t.app.inject({
        method: 'POST',
        url: '/runs',
        headers: t.admin,
        payload: spec({ name }),
      });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json()).toMatchObject({ type: 'urn:mpo:problem:dependency-unavailable', status: 503 });
      expect(res.json().detail).toMatch(/Redis/);
      expect(await runsNamed(name)).toEqual([]);
      expect((await t.app.inject({ method: 'GET', url: '/readyz', headers: t.admin })).statusCode).toBe(503);
      expect((await t.app.inject({ method: 'GET', url: '/queues', headers: t.admin })).statusCode).toBe(503);
      // Reads that need only Postgres still work.
      expect((await t.app.inject({ method: 'GET', url: '/runs', headers: t.admin })).statusCode).toBe(200);
      // Prometheus keeps answering and says which dependency is away.
      const prom = await t.app.inject({ method: 'GET', url: '/metrics', headers: t.admin });
      expect(prom.body).toMatch(/mpo_dependency_up\{dependency="redis"\} 0/);

      await proxy.up();
      const ok = await until(
        async () => {
          const r = await t.app.inject({
            method: 'POST',
            url: '/runs',
            headers: t.admin,
            payload: spec({ name }),
          });
          return r.statusCode === 201 ? r : undefined;
        },
        30_000,
        250,
      );
      expect(ok.json().queued).toBe(true);
      expect(await flowInRedis(t.prefix, ok.json().id)).toBeTruthy();
    } finally {
      await t.cleanup();
      await proxy.down();
    }
  });

  it('publishes a committed run whose publish failed, once Redis answers again (never a run without jobs)', async () => {
    const t = await testApp('outbox-retry');
    try {
      const real = t.app.outbox.publishRow;
      let failing = true;
      t.app.outbox.publishRow = async (row) => {
        if (failing) throw new Error('Redis went away between commit and publish');
        return real(row);
      };
      const res = await t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: spec() });
      expect(res.statusCode).toBe(201);
      expect(res.json().queued).toBe(false);
      const id = res.json().id;
      expect(await flowInRedis(t.prefix, id)).toBeUndefined();
      const [row] = await db.outbox.forRun(id);
      expect(row).toMatchObject({
        publishedAt: null,
        lastError: 'Redis went away between commit and publish',
      });
      failing = false;
      // The stored row names the run only; the periodic drain (every 200 ms here) reads the run back and publishes it.
      expect(row!.payload).toEqual({ prefix: t.prefix, runId: id });
      const tree = await until(() => flowInRedis(t.prefix, id));
      await until(async () => (await db.outbox.pendingCount({ runId: id })) === 0);
      const run = await db.runs.get(id);
      expect(run.trials.every((x) => x.status === 'QUEUED')).toBe(true);
      // Every trial's jobs carry its own point, read back from its row.
      const points = tree.children!.map((c) => parseTrialJobRef(c.children![0]!.job.data));
      expect(points.map((p) => [p.trialId, p.trialIndex, p.params]).sort()).toEqual(
        run.trials.map((x) => [x.id, x.index, { beta: (x.hyperparameters as { beta: number }).beta }]).sort(),
      );
    } finally {
      await t.cleanup();
    }
  });

  it('dead-letters a row that keeps failing for good, shows it on /queues, and publishes later runs meanwhile', async () => {
    const t = await testApp('outbox-poison', { outboxMaxAttempts: 3, outboxBackoffMs: 20 });
    try {
      const real = t.app.outbox.publishRow;
      const poisoned = new Set<string>();
      const tries = new Map<string, number>();
      t.app.outbox.publishRow = async (row) => {
        tries.set(row.runId, (tries.get(row.runId) ?? 0) + 1);
        if (poisoned.has(row.runId)) throw new Error('ERR Error running script: payload rejected');
        return real(row);
      };
      const name = `poison-${randomUUID()}`;
      // The poisoned run: its id is known only once created, so poison the first run of this name.
      const first = t.app.outbox.publishRow;
      t.app.outbox.publishRow = async (row) => {
        if ((await db.runs.get(row.runId)).name === name) poisoned.add(row.runId);
        return first(row);
      };
      const bad = await t.app.inject({
        method: 'POST',
        url: '/runs',
        headers: t.admin,
        payload: spec({ name }),
      });
      expect(bad.statusCode).toBe(201);
      expect(bad.json().queued).toBe(false);
      const badId = bad.json().id;
      const dead = await until(async () => {
        const [row] = await db.outbox.forRun(badId);
        return row?.deadAt ? row : undefined;
      });
      expect(dead).toMatchObject({
        attempts: 3,
        publishedAt: null,
        lastError: 'ERR Error running script: payload rejected',
      });
      const attempts = tries.get(badId);
      // Later runs are not held up, and the dead letter is not retried any more.
      const good = await t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: spec() });
      expect(good.statusCode).toBe(201);
      expect(good.json().queued).toBe(true);
      expect(await flowInRedis(t.prefix, good.json().id)).toBeTruthy();
      await new Promise((r) => setTimeout(r, 600)); // three drain rounds
      expect(tries.get(badId)).toBe(attempts);
      const view = (await t.app.inject({ method: 'GET', url: '/queues', headers: t.admin })).json();
      expect(view.outbox.pending).toBe(0);
      expect(view.outbox.deadLetters).toEqual([
        expect.objectContaining({
          runId: badId,
          kind: 'flow',
          attempts: 3,
          lastError: expect.stringMatching(/payload rejected/),
        }),
      ]);
    } finally {
      await t.cleanup();
    }
  });

  it('drains leftovers at start-up (a process that died after commit, before publishing)', async () => {
    const prefix = `mpo-api-test-boot-${randomUUID().slice(0, 8)}`;
    const { spec: s, trials } = parseRunSpec(spec(), { ...roots(), mustExist: false });
    const { run } = await db.runs.create({
      name: s.name,
      spec: s as never,
      trials: trials.map((x) => ({ hyperparameters: x.hyperparameters as never })),
      outbox: (runId, trialIds) => [
        {
          kind: OUTBOX_KINDS.flow,
          payload: {
            prefix,
            flow: buildRunFlow(
              runId,
              s,
              trialIds.map((trialId, i) => ({ trialId, plan: trials[i]! })),
            ),
          } as never,
        },
      ],
    });
    expect(await db.outbox.pendingCount({ runId: run.id })).toBe(1);
    const t = await testApp('boot', { queuePrefix: prefix, outboxIntervalMs: 60_000 });
    try {
      // buildApp returns after onReady, which drained the outbox.
      expect(await db.outbox.pendingCount({ runId: run.id })).toBe(0);
      const tree = await flowInRedis(prefix, run.id);
      expect(tree?.children).toHaveLength(trials.length);
    } finally {
      await t.cleanup();
    }
  });
});

describe('Redis paused (alive but not answering)', () => {
  it('answers POST /runs with 503 and Retry-After within seconds, not after the pause; then works', async () => {
    const server = await ownRedis();
    const t = await testApp('redis-paused', { redisUrl: server.url });
    const admin = new Redis(server.url);
    try {
      const pauseMs = 10_000;
      await admin.call('CLIENT', 'PAUSE', String(pauseMs), 'ALL');
      const pausedAt = Date.now();
      const name = `while-paused-${randomUUID()}`;
      const res = await t.app.inject({
        method: 'POST',
        url: '/runs',
        headers: t.admin,
        payload: spec({ name }),
      });
      const tookMs = Date.now() - pausedAt;
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBeDefined();
      expect(res.json().detail).toMatch(/Redis/);
      expect(tookMs).toBeLessThan(8_000);
      expect(await runsNamed(name)).toEqual([]);

      await admin.call('CLIENT', 'UNPAUSE');
      const ok = await until(
        async () => {
          const r = await t.app.inject({
            method: 'POST',
            url: '/runs',
            headers: t.admin,
            payload: spec({ name }),
          });
          return r.statusCode === 201 ? r : undefined;
        },
        30_000,
        250,
      );
      expect(ok.json().queued).toBe(true);
    } finally {
      admin.disconnect();
      await t.cleanup();
      await server.stop();
    }
  });
});

describe('Postgres away', () => {
  it('answers 503 (not 500) and recovers', async () => {
    const proxy = await TcpProxy.start(pgTarget);
    const url = new URL(DATABASE_URL);
    url.host = `127.0.0.1:${proxy.port}`;
    const t = await testApp('pg-down', { databaseUrl: url.toString(), dbConnectTimeoutMs: 1_000 });
    try {
      expect((await t.app.inject({ method: 'GET', url: '/runs', headers: t.admin })).statusCode).toBe(200);
      await proxy.down();
      for (const [method, path] of [
        ['GET', '/runs'],
        ['POST', '/runs'],
      ] as const) {
        const res = await t.app.inject({
          method,
          url: path,
          headers: t.admin,
          ...(method === 'POST' ? { payload: spec() } : {}),
        });
        expect(res.statusCode, `${method} ${path}`).toBe(503);
        expect(res.json().detail).toMatch(/Postgres/);
      }
      expect((await t.app.inject({ method: 'GET', url: '/readyz', headers: t.admin })).statusCode).toBe(503);
      expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      await proxy.up();
      await until(
        async () =>
          (await t.app.inject({ method: 'GET', url: '/runs', headers: t.admin })).statusCode === 200,
      );
    } finally {
      await t.cleanup();
      await proxy.down();
    }
  });

  it('keeps /metrics answering for Prometheus: the scrape token and recently confirmed tokens, without Postgres', async () => {
    const proxy = await TcpProxy.start(pgTarget);
    const url = new URL(DATABASE_URL);
    url.host = `127.0.0.1:${proxy.port}`;
    const metricsToken = `scrape-${randomUUID()}`;
    const scrape = { authorization: `Bearer ${metricsToken}` };
    const t = await testApp('pg-down-metrics', {
      databaseUrl: url.toString(),
      dbConnectTimeoutMs: 1_000,
      metricsToken,
    });
    const get = (path: string, headers: Record<string, string>) =>
      t.app.inject({ method: 'GET', url: path, headers });
    try {
      // Postgres confirms the admin token once (any route); the scrape token is never in Postgres.
      expect((await get('/metrics', t.admin)).statusCode).toBe(200);
      expect((await get('/metrics', scrape)).statusCode).toBe(200);
      expect((await get('/runs', scrape)).statusCode).toBe(401); // /metrics only
      await proxy.down();
      for (const headers of [t.admin, scrape]) {
        const started = Date.now();
        const res = await get('/metrics', headers);
        expect(res.statusCode).toBe(200);
        expect(res.body).toMatch(/mpo_dependency_up\{dependency="postgres"\} 0/);
        expect(res.body).toMatch(/mpo_dependency_up\{dependency="redis"\} 1/);
        expect(Date.now() - started).toBeLessThan(5_000);
      }
      // A token Postgres never confirmed cannot be checked now: 503, not 401 (it may be valid) and not 500.
      const unknown = await get('/metrics', { authorization: `Bearer unknown-${randomUUID()}` });
      expect(unknown.statusCode).toBe(503);
      expect(unknown.json().detail).toMatch(/Postgres/);
      await proxy.up();
      await until(async () => /dependency="postgres"\} 1/.test((await get('/metrics', scrape)).body));
      expect((await get('/metrics', { authorization: `Bearer unknown-${randomUUID()}` })).statusCode).toBe(
        401,
      );
      // Closing after connections were cut mid-use finishes (Db.close is bounded).
      await proxy.down();
      await get('/metrics', t.admin);
      const closing = Date.now();
      await t.app.close();
      expect(Date.now() - closing).toBeLessThan(10_000);
    } finally {
      await t.cleanup();
      await proxy.down();
    }
  });
});

describe('start-up checks', () => {
  it('refuses a Redis whose maxmemory-policy is not noeviction, with a clear error', async () => {
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
      await until(async () => {
        const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => null });
        probe.on('error', () => {});
        try {
          await probe.connect();
          return true;
        } catch {
          return false;
        } finally {
          probe.disconnect();
        }
      });
      const err = await testApp('lru', { redisUrl: `redis://127.0.0.1:${port}` }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/maxmemory-policy "allkeys-lru".*needs "noeviction"/);
      expect((err as Error).message).toMatch(/CONFIG SET maxmemory-policy noeviction/);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('names the unreachable dependency', async () => {
    const port = await freePort();
    const err = await testApp('no-redis', { redisUrl: `redis://127.0.0.1:${port}` }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(new RegExp(`Redis unreachable at redis://127.0.0.1:${port}`));
    const url = new URL(DATABASE_URL);
    url.host = `127.0.0.1:${await freePort()}`;
    const err2 = await testApp('no-pg', { databaseUrl: url.toString(), dbConnectTimeoutMs: 1_000 }).catch(
      (e: Error) => e,
    );
    expect((err2 as Error).message).toMatch(/Postgres unreachable/);
  });
});

afterAll(async () => {
  await deleteKeys('mpo-api-test-boot');
});
