// Shared test helpers: real Postgres, real Redis (a prefix of each test's
// own), agents as real processes (dist/main.js), and payload builders.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '@mpo/db';
import { CONTRACT_VERSION, type EvalJobData, type TrainJobData } from '@mpo/queue';
import type { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://root@127.0.0.1:5432/mpo';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const WORKER_ROOT = resolve(import.meta.dirname, '..');
export const MAIN = join(WORKER_ROOT, 'dist/main.js');
export const FAKE_MPO = join(WORKER_ROOT, 'fixtures/fake-mpo.mjs');

/** A tiny random Llama (the golden pairs' byte vocabulary fits it): a step takes milliseconds. */
export const TINY_MODEL = {
  init: {
    vocabSize: 264,
    hiddenSize: 32,
    intermediateSize: 64,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 512,
    bosTokenId: 256,
    eosTokenId: 257,
    padTokenId: 258,
    architecture: 'LlamaForCausalLM',
  },
  seed: 1,
};

export interface Scratch {
  prefix: string;
  dir: string;
  modelRoot: string;
  dataRoot: string;
  artifactRoot: string;
}

/** Ids of a run and trial for tests that build payloads without a database. */
export const RUN_ID = '00000000-0000-4000-8000-000000000001';
export const TRIAL_ID = '00000000-0000-4000-8000-000000000002';

/** The model, data and artifact roots of a scratch folder, as trainer-config.ts takes them. */
export const rootsOf = (s: Scratch) => ({
  modelRoot: s.modelRoot,
  dataRoot: s.dataRoot,
  artifactRoot: s.artifactRoot,
});

/** A Redis prefix and model/data/artifact roots of this test's own (the model root holds tiny.json). */
export function scratch(tag: string): Scratch {
  const dir = mkdtempSync(join(tmpdir(), `mpo-worker-${tag}-`));
  const s = {
    prefix: `mpo-wtest-${tag}-${randomUUID().slice(0, 8)}`,
    dir,
    modelRoot: join(dir, 'models'),
    dataRoot: join(dir, 'data'),
    artifactRoot: join(dir, 'artifacts'),
  };
  for (const d of [s.modelRoot, s.dataRoot, s.artifactRoot]) mkdirSync(d, { recursive: true });
  writeFileSync(join(s.modelRoot, 'tiny.json'), JSON.stringify(TINY_MODEL));
  return s;
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

export const newRedis = (url = REDIS_URL) => new Redis(url, { maxRetriesPerRequest: null });

/** Environment of an agent started on `s`, with short locks so a killed agent's job comes back in seconds. */
export function agentEnv(s: Scratch, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL,
    REDIS_URL,
    MPO_QUEUE_PREFIX: s.prefix,
    MPO_DEVICES: 'cpu:1',
    MPO_MODEL_ROOT: s.modelRoot,
    MPO_DATA_ROOT: s.dataRoot,
    MPO_ARTIFACT_ROOT: s.artifactRoot,
    LOG_LEVEL: 'debug',
    MPO_LOCK_DURATION_MS: '4000',
    MPO_STALLED_INTERVAL_MS: '1000',
    MPO_HEARTBEAT_MS: '500',
    MPO_METRIC_FLUSH_MS: '200',
    MPO_DB_RETRY_MAX_MS: '1000',
    MPO_DRAIN_DELAY_S: '1',
    ...extra,
  };
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface AgentHandle {
  id: string;
  proc: ChildProcess;
  logs: LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Stops the agent (SIGTERM) if it still runs; for afterEach. */
  dispose(): Promise<void>;
}

export function startAgent(
  env: Record<string, string>,
  id = `agent-${randomUUID().slice(0, 6)}`,
): AgentHandle {
  const proc = spawn(process.execPath, [MAIN], {
    env: { ...process.env, ...env, MPO_AGENT_ID: id },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let buf = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      if (!l.trim()) continue;
      try {
        logs.push(JSON.parse(l));
      } catch {
        logs.push({ raw: l });
      }
    }
  });
  proc.stderr!.on('data', (chunk: Buffer) => logs.push({ stderr: chunk.toString() }));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    proc.on('exit', (code, signal) => res({ code, signal })),
  );
  let done = false;
  void exited.then(() => {
    done = true;
  });
  return {
    id,
    proc,
    logs,
    exited,
    waitForLog: async (pred, timeoutMs = 60_000, what = 'a log line') => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = logs.find(pred);
        if (hit) return hit;
        if (done) throw new Error(`agent ${id} exited before ${what}; last logs:\n${tail(logs)}`);
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${what}; last logs:\n${tail(logs)}`);
        await sleep(50);
      }
    },
    dispose: async () => {
      if (done) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export const tail = (logs: LogLine[], n = 15) =>
  logs
    .slice(-n)
    .map((l) => JSON.stringify(l).slice(0, 400))
    .join('\n');

export async function waitUntil<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Waits until the job `id` of `queue` has finished (completed, or failed with
 * every attempt spent; `states` narrows that) and returns it read after its
 * state. The order matters: reading the job before its state, a job that
 * finishes between the two reads comes back finished but with the hash of its
 * active self (no return value, an old attempt count, no failure reason),
 * which under load failed assertions at random.
 */
export async function finishedJob(
  queue: Queue,
  id: string,
  what: string,
  timeoutMs = 60_000,
  { states = ['completed', 'failed'], intervalMs = 100 }: { states?: string[]; intervalMs?: number } = {},
): Promise<Job> {
  return waitUntil(
    async () => {
      const state = await queue.getJobState(id);
      if (!states.includes(state)) return null;
      return (await queue.getJob(id)) ?? null;
    },
    `${what} (${queue.name}/${id}) to finish`,
    timeoutMs,
    intervalMs,
  );
}

export async function newTrials(db: Db, n: number, name = 'worker-test') {
  const { run } = await db.runs.create({
    name: `${name}-${randomUUID().slice(0, 8)}`,
    spec: { test: true },
    trials: Array.from({ length: n }, (_, i) => ({ hyperparameters: { i } })),
  });
  return { runId: run.id, trialIds: run.trials.map((t) => t.id) };
}

type TrainOverrides = Partial<Omit<TrainJobData, 'training'>> & {
  training?: Partial<TrainJobData['training']>;
};

/** A train payload on the tiny model and the golden pairs. */
export function trainData(runId: string, trialId: string, over: TrainOverrides = {}): TrainJobData {
  const steps = over.training?.steps ?? 40;
  const { training, ...rest } = over;
  return {
    v: CONTRACT_VERSION,
    runId,
    trialId,
    trialIndex: 0,
    method: 'dpo',
    hyperparameters: { beta: 0.1 },
    params: {},
    model: { kind: 'path', path: 'tiny.json' },
    data: [{ kind: 'builtin', id: 'golden-pairs' }],
    dominantLanguage: 'en',
    targetLanguages: ['zh', 'ko', 'ar', 'bn', 'sw'],
    totalSteps: steps,
    slots: { device: 'cpu', count: 1 },
    objective: { metric: 'loss', mode: 'min' },
    ...rest,
    training: {
      steps,
      batchSize: 2,
      microBatch: 1,
      cutoff: 64,
      checkpointEvery: 10,
      seed: 1,
      learningRate: 1e-3,
      warmupRatio: 0.1,
      ...training,
    },
  };
}

export function evalData(runId: string, trialId: string, over: Partial<EvalJobData> = {}): EvalJobData {
  return {
    v: CONTRACT_VERSION,
    runId,
    trialId,
    trialIndex: 0,
    model: { kind: 'path', path: 'tiny.json' },
    data: [{ kind: 'builtin', id: 'golden-pairs' }],
    dominantLanguage: 'en',
    targetLanguages: ['zh'],
    benchmarks: ['multijail'],
    languages: ['en', 'zh'],
    maxPrompts: 5,
    judge: 'builtin',
    cutoff: 64,
    slots: { device: 'cpu', count: 1 },
    ...over,
  };
}

/**
 * A TCP proxy in front of Postgres that the test can cut (every connection
 * dropped, new ones refused) and restore: "Postgres unreachable for a while".
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async open(port = this.port): Promise<number> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      this.sockets.add(client);
      this.sockets.add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(port, '127.0.0.1', () => res());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((res) => s.close(() => res()));
  }

  /** DATABASE_URL through the proxy. */
  url(base = DATABASE_URL): string {
    const u = new URL(base);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}
