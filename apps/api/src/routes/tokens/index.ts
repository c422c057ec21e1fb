// Admin-only token management. The secret is returned once, at creation.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { HttpError } from '../../errors.js';
import { DateTime, errorResponses, ProblemResponse, Uuid } from '../common.js';

const tokensRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            id: Uuid,
            name: Type.String(),
            isAdmin: Type.Boolean(),
            token: Type.String({ description: 'the secret; shown once, stored only as its sha256' }),
            createdAt: DateTime,
          }),
          403: ProblemResponse,
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { secret, identity } = await app.db.tokens.issue(req.body.name, { isAdmin: req.body.admin });
      req.log.info({ issuedTokenId: identity.id, isAdmin: identity.isAdmin }, 'token issued');
      return reply.code(201).send({ ...identity, token: secret, createdAt: new Date() });
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
      try {
        await app.db.tokens.revoke(req.params.id);
      } catch (err) {
        // Prisma's "record to update not found".
        if ((err as { code?: string }).code === 'P2025')
          throw new HttpError(404, `token ${req.params.id} not found`);
        throw err;
      }
      req.log.info({ revokedTokenId: req.params.id }, 'token revoked');
      return reply.code(204).send(null);
    },
  );
};

export default tokensRoutes;
