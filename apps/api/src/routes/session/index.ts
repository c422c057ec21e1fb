// Dashboard sign-in. `POST /session` (bearer token) answers who the token is;
// for an admin token it also sets the session cookie that bull-board under
// /admin/queues accepts (a browser navigating there cannot send a header).
// `DELETE /session` clears the cookie (sign-out; no token needed to forget one).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { bearerToken, SESSION_COOKIE, SESSION_COOKIE_PATH, SESSION_MAX_AGE_S } from '../../plugins/auth.js';
import { errorResponses, Uuid } from '../common.js';

export interface SessionRoutesOptions {
  /** Mark the cookie Secure always (behind a TLS-terminating proxy); otherwise only on https requests. */
  secureCookie?: boolean;
}

const Session = Type.Object({
  id: Uuid,
  name: Type.String(),
  isAdmin: Type.Boolean(),
  adminCookie: Type.Boolean({
    description: 'whether the bull-board session cookie was set (admin tokens only)',
  }),
});

function cookie(value: string, maxAge: number, secure: boolean): string {
  return [
    `${SESSION_COOKIE}=${encodeURIComponent(value)}`,
    `Path=${SESSION_COOKIE_PATH}`,
    `Max-Age=${maxAge}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}

const sessionRoutes: FastifyPluginAsyncTypebox<SessionRoutesOptions> = async (app, opts) => {
  const secure = (protocol: string) => opts.secureCookie === true || protocol === 'https';

  app.post(
    '/session',
    {
      schema: {
        tags: ['ops'],
        summary: 'Sign in (dashboard)',
        description: `Checks the bearer token and says whose it is. For an admin token it also sets \`${SESSION_COOKIE}\` (HttpOnly, SameSite=Strict, Path=${SESSION_COOKIE_PATH}, ${SESSION_MAX_AGE_S} s), which bull-board at ${SESSION_COOKIE_PATH} accepts instead of the header.`,
        response: { 200: Session, ...errorResponses },
      },
    },
    async (req, reply) => {
      const identity = req.identity!;
      if (identity.isAdmin) {
        // The header was checked by the auth hook; the same secret goes into the cookie.
        const secret = bearerToken(req.headers.authorization)!;
        reply.header('set-cookie', cookie(secret, SESSION_MAX_AGE_S, secure(req.protocol)));
      }
      reply.header('cache-control', 'no-store');
      return { ...identity, adminCookie: identity.isAdmin };
    },
  );

  app.delete(
    '/session',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['ops'],
        summary: 'Sign out (dashboard): clears the bull-board session cookie',
        security: [],
        response: { 204: Type.Null() },
      },
    },
    async (req, reply) =>
      reply
        .code(204)
        .header('set-cookie', cookie('', 0, secure(req.protocol)))
        .send(null),
  );
};

export default sessionRoutes;
