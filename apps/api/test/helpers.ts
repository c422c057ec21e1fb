import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Db, NewTrial } from '@mpo/db';
import {
  parseTrainJobData,
  parseTrialJobRef,
  type RunSpec,
  type TrainJobData,
  trainJobFromRef,
  trialRows,
} from '@mpo/queue';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pino from 'pino';
import { type BuildAppOptions, buildApp } from '../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://root@127.0.0.1:5432/mpo';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ADMIN_TOKEN = `test-admin-${randomUUID()}`;

export function roots() {
  const base = mkdtempSync(join(tmpdir(), 'mpo-api-'));
  const modelRoot = join(base, 'models');
  const dataRoot = join(base, 'data');
  mkdirSync(join(modelRoot, 'llama-1b'), { recursive: true });
  mkdirSync(dataRoot, { recursive: true });
  writeFileSync(join(dataRoot, 'mpo.json'), '[]');
  return { modelRoot, dataRoot };
}

export const spec = (over: Record<string, unknown> = {}) => ({
  name: `test-${randomUUID().slice(0, 8)}`,
  model: 'llama-1b',
  data: 'mpo.json',
  dominantLanguage: 'en',
  targetLanguages: ['zh', 'ko'],
  method: 'mpo',
  search: {
    strategy: 'grid',
    space: { beta: [0.5, 1, 1.5] },
    metric: 'heldout/reward_gap',
    mode: 'max',
  },
  resources: { ranksPerTrial: 2, device: 'cpu' },
  eval: { benchmarks: ['reward-gap', 'multijail'] },
  training: { maxSteps: 20, batchSize: 8, microBatchSize: 2 },
  ...over,
});

/** An app on its own queue prefix, quiet unless LOG_LEVEL says otherwise; cleanup closes it and deletes its keys. */
export async function testApp(tag: string, opts: BuildAppOptions = {}) {
  const prefix = opts.queuePrefix ?? `mpo-api-test-${tag}-${randomUUID().slice(0, 8)}`;
  const app = await buildApp({
    databaseUrl: DATABASE_URL,
    redisUrl: REDIS_URL,
    adminToken: ADMIN_TOKEN,
    ...roots(),
    outboxIntervalMs: 200,
    logger: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
    ...opts,
    queuePrefix: prefix,
  });
  return {
    app,
    prefix,
    admin: { authorization: `Bearer ${ADMIN_TOKEN}` },
    async cleanup() {
      await app.close();
      await deleteKeys(prefix);
    },
  };
}

export async function deleteKeys(prefix: string) {
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

export async function until<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  everyMs = 100,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * A TCP proxy in front of a real server, to take Redis or Postgres "down" and
 * back without touching the shared servers other suites use: `down()` closes
 * the listener and cuts every connection (clients see resets, then refusals);
 * `up()` listens on the same port again.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(target: { host: string; port: number }) {
    const proxy = new TcpProxy(await freePort(), target);
    await proxy.up();
    return proxy;
  }

  up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = new Socket();
      upstream.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    return new Promise((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * A redis-server of our own on a free port (no persistence), for outages that
 * must not touch the shared server: pause it (CLIENT PAUSE), stop it. `stop()` in a finally.
 */
export async function ownRedis(): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const port = await freePort();
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 50 });
  probe.on('error', () => {});
  await until(async () => (await probe.ping().catch(() => null)) === 'PONG', 10_000, 50);
  probe.disconnect();
  return {
    url,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      }),
  };
}

/** What a worker trains from a published train job: its trial reference rebuilt from the run's stored spec. */
export async function trainJobOf(app: FastifyInstance, data: unknown): Promise<TrainJobData> {
  const ref = parseTrialJobRef(data);
  return parseTrainJobData(trainJobFromRef((await app.db.runs.spec(ref.runId)) as unknown as RunSpec, ref));
}

/**
 * Creates every trial a run has not created yet, as its agents would (rows only, no jobs: POST /runs
 * creates the first trial, agents the rest: apps/worker/src/materialize.ts). For tests of trial rows.
 */
export async function createAllTrials(db: Db, runId: string): Promise<void> {
  const spec = (await db.runs.spec(runId)) as unknown as RunSpec;
  await db.runs.materialize(runId, 'all', (from, to) => trialRows(spec, from, to) as NewTrial[]);
}
