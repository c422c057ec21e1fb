// Dashboard sign-in. `POST /session` (bearer token) answers who the token is;
// for an admin token it also sets the session cookie that bull-board under
// /admin/queues accepts (a browser navigating there cannot send a header).
// `DELETE /session` ends the session and clears the cookie (sign-out; no token needed).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import {
  createSession,
  endSession,
  readCookie,
  SESSION_COOKIE,
  SESSION_COOKIE_PATH,
  SESSION_MAX_AGE_S,
} from '../../plugins/auth.js';
import { errorResponses, Uuid } from '../common.js';

export interface SessionRoutesOptions {
  /** Mark the cookie Secure always; otherwise on https requests and those a proxy says came over https. */
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
  // X-Forwarded-Proto / Forwarded are only used to add Secure, which is never less safe.
  const secure = (req: FastifyRequest) =>
    opts.secureCookie === true ||
    req.protocol === 'https' ||
    /^\s*https\s*(,|$)/i.test(String(req.headers['x-forwarded-proto'] ?? '')) ||
    /(^|[;,\s])proto=https(\s|;|,|$)/i.test(String(req.headers.forwarded ?? ''));

  app.post(
    '/session',
    {
      schema: {
        tags: ['ops'],
        summary: 'Sign in (dashboard)',
        description: `Checks the bearer token and says whose it is. For an admin token it also starts a session and sets \`${SESSION_COOKIE}\` to its opaque id (HttpOnly, SameSite=Strict, Path=${SESSION_COOKIE_PATH}, ${SESSION_MAX_AGE_S} s, Secure over https or behind a proxy that says so), which bull-board at ${SESSION_COOKIE_PATH} accepts instead of the header.`,
        response: { 200: Session, ...errorResponses },
      },
    },
    async (req, reply) => {
      const identity = req.identity!;
      if (identity.isAdmin) {
        const session = await createSession(app, identity.id);
        reply.header('set-cookie', cookie(session, SESSION_MAX_AGE_S, secure(req)));
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
    async (req, reply) => {
      await endSession(app, readCookie(req.headers.cookie, SESSION_COOKIE));
      return reply
        .code(204)
        .header('set-cookie', cookie('', 0, secure(req)))
        .send(null);
    },
  );
};

export default sessionRoutes;
