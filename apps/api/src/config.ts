// Configuration from the environment (see the README's table); buildApp takes
// the same fields directly, so tests never touch process.env.
import { resolve } from 'node:path';
import { DEFAULT_DATABASE_URL, OUTBOX_RETRY } from '@mpo/db';
import {
  DEFAULT_BUILTIN_DATA,
  DEFAULT_BUILTIN_MODELS,
  DEFAULT_QUEUE_PREFIX,
  DEFAULT_REDIS_URL,
} from '@mpo/queue';

export interface AppConfig {
  databaseUrl: string;
  redisUrl: string;
  /** BullMQ prefix and namespace of our own Redis keys, one per deployment. */
  queuePrefix: string;
  /** Bootstrap admin token (stored hashed like any other); without it only existing tokens work. */
  adminToken: string | undefined;
  /** A token for GET /metrics only, checked without Postgres (Prometheus keeps scraping through an outage). */
  metricsToken: string | undefined;
  modelRoot: string;
  dataRoot: string;
  /** Reject model/data paths that do not exist at submit time. */
  requirePathsExist: boolean;
  builtinModels: readonly string[];
  builtinData: readonly string[];
  logLevel: string;
  /** Largest accepted request body in bytes (larger → 413). */
  bodyLimit: number;
  /** How often the outbox publisher looks for unpublished rows. */
  outboxIntervalMs: number;
  /** Attempts before a permanently failing outbox row becomes a dead letter, and the first backoff (doubling). */
  outboxMaxAttempts: number;
  outboxBackoffMs: number;
  /** Serve /docs without a token (off by default: every route but /healthz needs one). */
  publicDocs: boolean;
  /** Postgres pool size and connect timeout. */
  dbPoolSize: number;
  dbConnectTimeoutMs: number;
  /** The built dashboard served at / (default: apps/api/dist/dashboard). */
  dashboardDir: string | undefined;
  /** bull-board at /admin/queues without job actions (retry, remove, clean, pause): on unless MPO_BULL_BOARD_WRITES=1. */
  bullBoardReadOnly: boolean;
  /** Mark the bull-board session cookie Secure even on plain-http requests (TLS ends at a proxy). */
  secureCookie: boolean;
  /** Limits of a token whose own (set by an admin) are null. */
  quotaDefaults: QuotaDefaults;
}

/** Per-token limits: unfinished trials, their rank-steps, requests per minute. */
export interface QuotaDefaults {
  maxActiveTrials: number;
  maxRankSteps: number;
  rateLimitPerMinute: number;
}

/**
 * Defaults high enough for a lab's sweeps (10,000 trials; 10^12 rank-steps,
 * more than 1,000 trials of 64 ranks × 10^7 steps, the most a spec allows of
 * each) and for the dashboard's polling (100 requests a second); deployments
 * shared by many users set lower ones (MPO_MAX_* and MPO_RATE_LIMIT_PER_MINUTE).
 */
export const QUOTA_DEFAULTS: QuotaDefaults = {
  maxActiveTrials: 10_000,
  maxRankSteps: 1e12,
  rateLimitPerMinute: 6_000,
};

export const ONE_MIB = 1024 * 1024;

const list = (s: string | undefined) =>
  s
    ?.split(',')
    .map((x) => x.trim())
    .filter(Boolean);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  return {
    databaseUrl: env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    redisUrl: env.REDIS_URL ?? DEFAULT_REDIS_URL,
    queuePrefix: env.MPO_QUEUE_PREFIX ?? DEFAULT_QUEUE_PREFIX,
    adminToken: env.MPO_ADMIN_TOKEN || undefined,
    metricsToken: env.MPO_METRICS_TOKEN || undefined,
    modelRoot: resolve(env.MPO_MODEL_ROOT ?? 'models'),
    dataRoot: resolve(env.MPO_DATA_ROOT ?? 'data'),
    requirePathsExist: env.MPO_REQUIRE_PATHS_EXIST !== '0',
    builtinModels: list(env.MPO_BUILTIN_MODELS) ?? DEFAULT_BUILTIN_MODELS,
    builtinData: list(env.MPO_BUILTIN_DATA) ?? DEFAULT_BUILTIN_DATA,
    logLevel: env.LOG_LEVEL ?? 'info',
    bodyLimit: Number(env.MPO_BODY_LIMIT ?? ONE_MIB),
    outboxIntervalMs: Number(env.MPO_OUTBOX_INTERVAL_MS ?? 1_000),
    outboxMaxAttempts: Number(env.MPO_OUTBOX_MAX_ATTEMPTS ?? OUTBOX_RETRY.maxAttempts),
    outboxBackoffMs: Number(env.MPO_OUTBOX_BACKOFF_MS ?? OUTBOX_RETRY.baseSeconds * 1000),
    publicDocs: env.MPO_PUBLIC_DOCS === '1',
    dbPoolSize: Number(env.MPO_DB_POOL ?? 10),
    dbConnectTimeoutMs: Number(env.MPO_DB_CONNECT_TIMEOUT_MS ?? 5_000),
    dashboardDir: env.MPO_DASHBOARD_DIR || undefined,
    bullBoardReadOnly: env.MPO_BULL_BOARD_WRITES !== '1',
    secureCookie: env.MPO_SECURE_COOKIE === '1',
    quotaDefaults: {
      maxActiveTrials: Number(env.MPO_MAX_ACTIVE_TRIALS ?? QUOTA_DEFAULTS.maxActiveTrials),
      maxRankSteps: Number(env.MPO_MAX_RANK_STEPS ?? QUOTA_DEFAULTS.maxRankSteps),
      rateLimitPerMinute: Number(env.MPO_RATE_LIMIT_PER_MINUTE ?? QUOTA_DEFAULTS.rateLimitPerMinute),
    },
  };
}
