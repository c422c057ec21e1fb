// buildApp: the Fastify control plane, one plugin per concern. Returns a ready
// app (start-up checks done: Postgres reachable, Redis reachable with
// maxmemory-policy noeviction, admin token stored, outbox leftovers drained);
// `listen` is the caller's business (main.ts, tests use inject).

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { type Db, OUTBOX_RETRY } from '@mpo/db';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { type AppConfig, loadConfig } from './config.js';
import { errorBody, errorHandler, problemContentType } from './errors.js';
import authPlugin, { SESSION_COOKIE_PATH } from './plugins/auth.js';
import bullBoardPlugin from './plugins/bull-board.js';
import dashboardPlugin from './plugins/dashboard.js';
import dbPlugin from './plugins/db.js';
import docsPlugin from './plugins/docs.js';
import jsonBodyPlugin from './plugins/json-body.js';
import metricsPlugin from './plugins/metrics.js';
import outboxPlugin from './plugins/outbox.js';
import queuesPlugin from './plugins/queues.js';
import quotasPlugin from './plugins/quotas.js';
import healthRoutes from './routes/health.js';
import queuesRoutes from './routes/queues/index.js';
import runsRoutes from './routes/runs/index.js';
import schemaRoutes from './routes/schemas.js';
import sessionRoutes from './routes/session/index.js';
import tokensRoutes from './routes/tokens/index.js';

/**
 * Secrets never reach the logs, whatever logs a request or an error: bearer
 * tokens, session cookies (their Set-Cookie too) and judge API keys.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'res.headers["set-cookie"]',
  'apiKey',
  '*.apiKey',
  '*.MPO_JUDGE_API_KEY',
  '*.MPO_ADMIN_TOKEN',
];

export const loggerOptions = (level: string) => ({
  level,
  redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
});

export interface BuildAppOptions extends Partial<AppConfig> {
  /** A pino-compatible logger; default: pino at `logLevel`. */
  logger?: FastifyBaseLogger;
  /** Use this Db instead of opening one (it is not closed with the app). */
  db?: Db;
}

export async function buildApp(opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { logger, db, ...overrides } = opts;
  const config: AppConfig = { ...loadConfig(), ...overrides };
  const app = Fastify({
    ...(logger ? { loggerInstance: logger } : { logger: loggerOptions(config.logLevel) }),
    bodyLimit: config.bodyLimit,
    // Every problem in a query string or body, not the first (the run spec has its own validator).
    ajv: { customOptions: { allErrors: true } },
    // Request ids from a proxy are kept (x-request-id), so logs can be joined across hops.
    requestIdHeader: 'x-request-id',
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler(errorHandler);
  app.addHook('preSerialization', problemContentType);
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(errorBody(404, `no route ${req.method} ${req.url.split('?')[0]}`)),
  );

  await app.register(jsonBodyPlugin);
  await app.register(docsPlugin);
  await app.register(dbPlugin, {
    databaseUrl: config.databaseUrl,
    poolSize: config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    adminToken: config.adminToken,
    ...(db ? { db } : {}),
  });
  await app.register(queuesPlugin, { redisUrl: config.redisUrl, prefix: config.queuePrefix });
  if (config.metricsToken !== undefined && config.metricsToken.length < 16)
    throw new Error('MPO_METRICS_TOKEN must be at least 16 characters');
  await app.register(authPlugin, {
    publicPrefixes: config.publicDocs ? ['/docs'] : [],
    metricsToken: config.metricsToken,
  });
  await app.register(quotasPlugin, { defaults: config.quotaDefaults, redisUrl: config.redisUrl });
  await app.register(outboxPlugin, {
    intervalMs: config.outboxIntervalMs,
    retry: {
      ...OUTBOX_RETRY,
      maxAttempts: config.outboxMaxAttempts,
      baseSeconds: config.outboxBackoffMs / 1000,
    },
  });
  await app.register(metricsPlugin);
  await app.register(healthRoutes);
  await app.register(schemaRoutes);
  await app.register(runsRoutes, {
    spec: {
      modelRoot: config.modelRoot,
      dataRoot: config.dataRoot,
      mustExist: config.requirePathsExist,
      builtinModels: config.builtinModels,
      builtinData: config.builtinData,
    },
  });
  await app.register(queuesRoutes);
  await app.register(tokensRoutes);
  await app.register(sessionRoutes, { secureCookie: config.secureCookie });
  await app.register(dashboardPlugin, config.dashboardDir ? { dir: config.dashboardDir } : {});
  await app.register(bullBoardPlugin, { basePath: SESSION_COOKIE_PATH, readOnly: config.bullBoardReadOnly });
  await app.ready();
  return app;
}
