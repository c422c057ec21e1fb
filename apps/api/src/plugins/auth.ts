// Bearer tokens. Every route needs one unless its config says `auth: 'public'`
// (only /healthz, and /docs when MPO_PUBLIC_DOCS=1); `auth: 'admin'` routes
// need an admin token. Tokens are looked up by their sha256 and compared in
// constant time (TokenRepository.verify); the secret is never stored.
import type { TokenIdentity } from '@mpo/db';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: 'public' | 'token' | 'admin';
  }
  interface FastifyRequest {
    identity: TokenIdentity | null;
  }
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]{8,512})$/;

/** The owner filter for repository calls: admins see every run, others their own. */
export const ownerFilter = (req: FastifyRequest): string | undefined =>
  req.identity?.isAdmin ? undefined : (req.identity?.id ?? '00000000-0000-0000-0000-000000000000');

export default fp(
  async (app, opts: { publicPrefixes?: string[] }) => {
    app.decorateRequest('identity', null);
    app.addHook('onRequest', async (req, reply) => {
      const mode = req.routeOptions.config?.auth ?? 'token';
      if (mode === 'public') return;
      if (opts.publicPrefixes?.some((p) => req.url === p || req.url.startsWith(`${p}/`))) return;
      const header = req.headers.authorization;
      const m = header ? BEARER.exec(header) : null;
      if (!m) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send(errorBody(401, header ? 'malformed Authorization header' : 'a bearer token is required'));
      }
      const identity = await app.db.tokens.verify(m[1]!);
      if (!identity) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer error="invalid_token"')
          .send(errorBody(401, 'invalid or revoked token'));
      }
      req.identity = identity;
      req.log = req.log.child({ tokenId: identity.id });
      if (mode === 'admin' && !identity.isAdmin)
        return reply.code(403).send(errorBody(403, 'admin token required'));
    });
  },
  { name: 'auth', dependencies: ['db'] },
);
