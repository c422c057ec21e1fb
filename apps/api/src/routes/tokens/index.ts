// Admin-only token management. The secret is returned once, at creation.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { HttpError } from '../../errors.js';
import { DateTime, errorResponses, ProblemResponse, Uuid } from '../common.js';

/**
 * Quota fields an admin may set on a token; null = the deployment's default
 * (apps/api/README.md, "Quotas and rate limits"). Rank-steps are a bigint
 * column, bounded here by what JSON numbers carry exactly.
 */
/**
 * An integer or null. One JSON-Schema type list, not a union: with Fastify's
 * type coercion a union's integer branch would turn null into 0 (and a null
 * branch first would turn 0 into null).
 */
const nullableInteger = (minimum: number, maximum: number, description: string) =>
  Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum, maximum, description });

const quotaFields = {
  maxActiveTrials: nullableInteger(
    0,
    2 ** 31 - 1,
    'most queued + running trials (PENDING, QUEUED, RUNNING) at once',
  ),
  maxRankSteps: nullableInteger(
    0,
    Number.MAX_SAFE_INTEGER,
    'most rank-steps (ranks per trial × steps) over the unfinished trials',
  ),
  rateLimitPerMinute: nullableInteger(1, 2 ** 31 - 1, 'most requests per minute with this token'),
};
const QuotasBody = Type.Partial(Type.Object(quotaFields));
const TokenQuotasSchema = Type.Object(quotaFields, {
  description: "the token's own limits; null: the deployment's default",
});

/** Runs an update of token `id`, answering 404 when there is no such token. */
async function notFoundAs404<T>(id: string, update: () => Promise<T>): Promise<T> {
  try {
    return await update();
  } catch (err) {
    // Prisma's "record to update not found".
    if ((err as { code?: string }).code === 'P2025') throw new HttpError(404, `token ${id} not found`);
    throw err;
  }
}

const tokensRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Long: one plugin for the token routes; each handler is short.
  app.post(
    '/tokens',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['tokens'],
        summary: 'Issue a token (admin)',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 200 }),
            admin: Type.Boolean({ default: false }),
            quotas: Type.Optional(QuotasBody),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            id: Uuid,
            name: Type.String(),
            isAdmin: Type.Boolean(),
            token: Type.String({ description: 'the secret; shown once, stored only as its sha256' }),
            quotas: TokenQuotasSchema,
            createdAt: DateTime,
          }),
          403: ProblemResponse,
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { secret, identity } = await app.db.tokens.issue(req.body.name, {
        isAdmin: req.body.admin,
        ...(req.body.quotas ? { quotas: req.body.quotas } : {}),
      });
      req.log.info({ issuedTokenId: identity.id, isAdmin: identity.isAdmin }, 'token issued');
      return reply.code(201).send({ ...identity, token: secret, createdAt: new Date() });
    },
  );

  app.patch(
    '/tokens/:id',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['tokens'],
        summary: "Set a token's quotas (admin)",
        params: Type.Object({ id: Uuid }),
        body: Type.Object({ quotas: QuotasBody }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            id: Uuid,
            name: Type.String(),
            isAdmin: Type.Boolean(),
            revoked: Type.Boolean(),
            quotas: TokenQuotasSchema,
          }),
          403: ProblemResponse,
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const token = await notFoundAs404(req.params.id, () =>
        app.db.tokens.setQuotas(req.params.id, req.body.quotas),
      );
      req.log.info({ tokenId: token.id, quotas: token.quotas }, 'token quotas set');
      const { revokedAt, ...rest } = token;
      return { ...rest, revoked: revokedAt !== null };
    },
  );

  app.delete(
    '/tokens/:id',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['tokens'],
        summary: 'Revoke a token (admin)',
        params: Type.Object({ id: Uuid }),
        response: { 204: Type.Null(), 403: ProblemResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      await notFoundAs404(req.params.id, () => app.db.tokens.revoke(req.params.id));
      req.log.info({ revokedTokenId: req.params.id }, 'token revoked');
      return reply.code(204).send(null);
    },
  );
};

export default tokensRoutes;
