// /healthz: the process is up (no dependencies, no token: for liveness probes).
// /readyz: Redis and Postgres answer within a second (token required, like
// every route but /healthz).

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorMessage } from '@mpo/util';
import { Type } from '@sinclair/typebox';
import { ErrorSchema } from './common.js';

const Check = Type.Object({ ok: Type.Boolean(), ms: Type.Number(), error: Type.Optional(Type.String()) });
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
  checks: Type.Object({ postgres: Check, redis: Check }),
});

async function check(fn: () => Promise<unknown>, timeoutMs = 1_000) {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: true, ms: performance.now() - t0 };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, error: errorMessage(err) };
  } finally {
    clearTimeout(timer);
  }
}

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['ops'],
        summary: 'Liveness',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'],
        summary: 'Readiness: Redis and Postgres reachable',
        response: {
          200: Ready,
          503: {
            description: 'not ready (which check failed), or a problem document',
            content: {
              'application/json': { schema: Ready },
              'application/problem+json': { schema: ErrorSchema },
            },
          },
        },
      },
    },
    async (_req, reply) => {
      const [postgres, redis] = await Promise.all([
        check(() => app.db.ping()),
        check(() => app.queues.redis.ping()),
      ]);
      const ready = postgres.ok && redis.ok;
      return reply
        .code(ready ? 200 : 503)
        .send({ status: ready ? 'ready' : 'unavailable', checks: { postgres, redis } });
    },
  );
};

export default healthRoutes;
