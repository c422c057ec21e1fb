// Per-token quotas (issue 16 item 2). Three limits, each answered with 429 and
// Retry-After through the central error helper:
// - requests per minute (@fastify/rate-limit, keyed by token id, counted in
//   Redis so every API process shares one count; unauthenticated requests and
//   public routes are not counted: the auth hook has already answered them);
// - unfinished (pending, queued, running) trials, and
// - rank-steps in flight (ranks per trial × total steps, summed over those
//   trials), both checked by `checkTrialQuotas` before POST /runs stores anything.
// A token's own limits (ApiToken columns, set by an admin) win; null means the
// deployment's default (AppConfig.quotaDefaults, from MPO_* variables).
import rateLimit from '@fastify/rate-limit';
import type { TokenIdentity } from '@mpo/db';
import { PRODUCER_REDIS_OPTIONS, type RunSpec, type TrialPlan } from '@mpo/queue';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { QuotaDefaults } from '../config.js';
import { HttpError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    quotaDefaults: QuotaDefaults;
  }
}

/**
 * How long a request waits for the rate-limit count before going uncounted: a
 * paused Redis must not add the shared connection's 3 s command timeout to
 * every request (POST /runs then answers its 503 within the same few seconds).
 */
export const RATE_LIMIT_REDIS_TIMEOUT_MS = 500;

/**
 * Retry-After of a trial quota: trials finish on their own schedule, so this
 * is a polling interval, not a promise (one minute: a short trial's length).
 */
export const TRIAL_QUOTA_RETRY_AFTER_S = 60;

/** A token's effective limits: its own where set, else the defaults. */
export function effectiveQuotas(identity: TokenIdentity | null, defaults: QuotaDefaults): QuotaDefaults {
  const own = identity?.quotas;
  return {
    maxActiveTrials: own?.maxActiveTrials ?? defaults.maxActiveTrials,
    maxRankSteps: own?.maxRankSteps ?? defaults.maxRankSteps,
    rateLimitPerMinute: own?.rateLimitPerMinute ?? defaults.rateLimitPerMinute,
  };
}

/** Rank-steps a run's trials will take: ranks per trial × each trial's total steps (one when unknown). */
export const runRankSteps = (spec: RunSpec, trials: TrialPlan[]): number =>
  trials.reduce((sum, t) => sum + spec.resources.ranksPerTrial * (t.totalSteps ?? 1), 0);

/** Refuses (429) a run that would take the token past its trial or rank-step quota; stores nothing. */
export async function checkTrialQuotas(
  app: FastifyInstance,
  req: FastifyRequest,
  spec: RunSpec,
  trials: TrialPlan[],
): Promise<void> {
  const identity = req.identity!;
  // Sessions do not carry the token's quotas; read them (bearer requests already have).
  const quotas = effectiveQuotas(
    identity.quotas
      ? identity
      : { ...identity, quotas: (await app.db.tokens.quotas(identity.id)) ?? undefined },
    app.quotaDefaults,
  );
  const usage = await app.db.tokens.usage(identity.id);
  const rankSteps = runRankSteps(spec, trials);
  if (usage.activeTrials + trials.length > quotas.maxActiveTrials)
    throw new HttpError(
      429,
      `this run's ${trials.length} trials would exceed the token's quota of ${quotas.maxActiveTrials} queued and running trials ` +
        `(${usage.activeTrials} unfinished); wait for trials to finish, cancel some, or ask an admin to raise the quota`,
      TRIAL_QUOTA_RETRY_AFTER_S,
    );
  if (usage.rankSteps + rankSteps > quotas.maxRankSteps)
    throw new HttpError(
      429,
      `this run's ${rankSteps} rank-steps (trials × ranks × steps) would exceed the token's quota of ${quotas.maxRankSteps} ` +
        `rank-steps in flight (${usage.rankSteps} in unfinished trials); wait for trials to finish, cancel some, or ask an admin to raise the quota`,
      TRIAL_QUOTA_RETRY_AFTER_S,
    );
}

export default fp<{ defaults: QuotaDefaults; redisUrl: string }>(
  async (app, opts) => {
    app.decorate('quotaDefaults', opts.defaults);
    const redis = new Redis(opts.redisUrl, {
      ...PRODUCER_REDIS_OPTIONS,
      commandTimeout: RATE_LIMIT_REDIS_TIMEOUT_MS,
    });
    redis.on('error', () => {}); // the queues plugin logs outages; this connection's requests just go uncounted
    app.addHook('onClose', async () => {
      redis.disconnect();
    });
    await app.register(rateLimit, {
      global: true,
      // A route-level onRequest hook: it runs after the app's auth hook (so the token is known), before the body is read.
      hook: 'onRequest',
      timeWindow: 60_000,
      redis,
      nameSpace: `${app.queues.prefix}:ratelimit:`,
      // A Redis outage must not turn every request into an error: the routes that need Redis answer 503 themselves.
      skipOnError: true,
      allowList: (req) => !req.identity,
      keyGenerator: (req) => req.identity?.id ?? req.ip,
      max: (req) => effectiveQuotas(req.identity, opts.defaults).rateLimitPerMinute,
      errorResponseBuilder: (_req, ctx) =>
        new HttpError(
          429,
          `rate limit of ${ctx.max} requests per minute for this token exceeded; retry in ${ctx.after}`,
          Math.max(1, Math.ceil(ctx.ttl / 1000)),
        ),
    });
  },
  { name: 'quotas', dependencies: ['db', 'queues', 'auth'] },
);
