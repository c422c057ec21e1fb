// The agent's configuration, from the environment (README's table). Tests and
// the bench build it with `loadAgentConfig({...})` so nothing reads
// process.env behind their back.
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DATABASE_URL } from '@mpo/db';
import { AGENT_HEARTBEAT_MS, DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL, WORKER_DEFAULTS } from '@mpo/queue';
import { DEFAULT_MAX_BUFFERED_ROWS } from './trial-writer.js';

/** The repository root (apps/worker/{src,dist}/config.* → ../../..). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The `mpo` CLI the agent runs its children with, unless MPO_CLI_COMMAND says otherwise. */
export const DEFAULT_CLI = [process.execPath, resolve(REPO_ROOT, 'apps/cli/bin/mpo.js')];

export interface AgentConfig {
  id: string;
  host: string;
  /** MPO_HOST_ID: which host this agent is on (a gang takes one agent per host); default the hostname. */
  hostId: string;
  /** MPO_HOST_ADDR: the address other hosts reach this one at (the c10d TCPStore); default the hostname. */
  hostAddr: string;
  /** How long a gang's seats stay reserved waiting for the other hosts (README "Trials that span hosts"). */
  gangReservationMs: number;
  /** A gang seat whose liveness key is not renewed for this long is dead (renewed every third of it). */
  gangLivenessMs: number;
  /** c10d rendezvous and per-collective timeout of a gang's ranks (MPO_C10D_TIMEOUT_MS). */
  c10dTimeoutMs: number;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  /** MPO_DEVICES ("cpu:4", "cuda:0,cuda:1", "cpu:2,gpu:1"); undefined: detect. */
  devices: string | undefined;
  /** MPO_CPU_CORES ("2-3"): the cores CPU slots map to (default: this process's affinity). */
  cpuCores: string | undefined;
  modelRoot: string;
  dataRoot: string;
  artifactRoot: string;
  logLevel: string;
  /** Command prefix of the mpo CLI: `<cli...> train --config F --json`. */
  cli: string[];
  /** BullMQ lock of an active job; renewed every lockDuration/2 while the job runs. */
  lockDurationMs: number;
  /** How often every agent looks for jobs whose lock expired (their agent died) and re-queues them. */
  stalledIntervalMs: number;
  /** Seconds a fetch blocks on an empty queue before it re-checks slots and shutdown. */
  drainDelaySeconds: number;
  heartbeatMs: number;
  /** Metric rows are written when this many are buffered... */
  metricFlushRows: number;
  /** ...or this long after the oldest one arrived. */
  metricFlushMs: number;
  /** Metric rows held in memory at most; beyond it the protocol file on disk is the backlog (trial-writer.ts). */
  metricBufferRows: number;
  /** Backoff cap between retries of a failed Postgres write. */
  dbRetryMaxMs: number;
  /** After SIGTERM, how long a child may take to finish its step and checkpoint before SIGKILL. */
  stopGraceMs: number;
  /** CPU threads of each rank of a GPU job (CPU jobs get one thread per slot: one slot is one core). */
  gpuRankThreads: number;
}

const num = (v: string | undefined, fallback: number, name: string): number => {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${v}"`);
  return n;
};

/** Splits MPO_CLI_COMMAND: a JSON array of strings, or words separated by spaces. */
export function parseCommand(s: string): string[] {
  const t = s.trim();
  if (t.startsWith('[')) {
    const v = JSON.parse(t) as unknown;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string'))
      throw new Error('MPO_CLI_COMMAND: a JSON array must hold strings');
    return v;
  }
  const words = t.split(/\s+/).filter(Boolean);
  if (words.length === 0) throw new Error('MPO_CLI_COMMAND is empty');
  return words;
}

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const host = hostname();
  const lockDurationMs = num(
    env.MPO_LOCK_DURATION_MS,
    WORKER_DEFAULTS.lockDuration ?? 60_000,
    'MPO_LOCK_DURATION_MS',
  );
  return {
    id: env.MPO_AGENT_ID || `${host}-${process.pid}`,
    host,
    hostId: env.MPO_HOST_ID || host,
    hostAddr: env.MPO_HOST_ADDR || host,
    gangReservationMs: num(env.MPO_GANG_RESERVATION_MS, 60_000, 'MPO_GANG_RESERVATION_MS'),
    gangLivenessMs: Math.max(300, num(env.MPO_GANG_LIVENESS_MS, 10_000, 'MPO_GANG_LIVENESS_MS')),
    c10dTimeoutMs: Math.max(1_000, num(env.MPO_C10D_TIMEOUT_MS, 60_000, 'MPO_C10D_TIMEOUT_MS')),
    databaseUrl: env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    redisUrl: env.REDIS_URL ?? DEFAULT_REDIS_URL,
    prefix: env.MPO_QUEUE_PREFIX || DEFAULT_QUEUE_PREFIX,
    devices: env.MPO_DEVICES || undefined,
    cpuCores: env.MPO_CPU_CORES || undefined,
    modelRoot: resolve(env.MPO_MODEL_ROOT ?? 'models'),
    dataRoot: resolve(env.MPO_DATA_ROOT ?? 'data'),
    artifactRoot: resolve(env.MPO_ARTIFACT_ROOT ?? 'artifacts'),
    logLevel: env.LOG_LEVEL ?? 'info',
    cli: env.MPO_CLI_COMMAND ? parseCommand(env.MPO_CLI_COMMAND) : DEFAULT_CLI,
    lockDurationMs,
    stalledIntervalMs: num(
      env.MPO_STALLED_INTERVAL_MS,
      WORKER_DEFAULTS.stalledInterval ?? 30_000,
      'MPO_STALLED_INTERVAL_MS',
    ),
    drainDelaySeconds: num(env.MPO_DRAIN_DELAY_S, 2, 'MPO_DRAIN_DELAY_S'),
    heartbeatMs: num(env.MPO_HEARTBEAT_MS, AGENT_HEARTBEAT_MS, 'MPO_HEARTBEAT_MS'),
    metricFlushRows: Math.max(1, num(env.MPO_METRIC_FLUSH_ROWS, 500, 'MPO_METRIC_FLUSH_ROWS')),
    metricFlushMs: num(env.MPO_METRIC_FLUSH_MS, 1_000, 'MPO_METRIC_FLUSH_MS'),
    metricBufferRows: Math.max(
      1,
      num(env.MPO_METRIC_BUFFER_ROWS, DEFAULT_MAX_BUFFERED_ROWS, 'MPO_METRIC_BUFFER_ROWS'),
    ),
    dbRetryMaxMs: num(env.MPO_DB_RETRY_MAX_MS, 10_000, 'MPO_DB_RETRY_MAX_MS'),
    stopGraceMs: num(env.MPO_STOP_GRACE_MS, 120_000, 'MPO_STOP_GRACE_MS'),
    gpuRankThreads: Math.max(1, num(env.MPO_GPU_RANK_THREADS, 2, 'MPO_GPU_RANK_THREADS')),
  };
}
