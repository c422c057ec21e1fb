// Bearer tokens. Every route needs one unless its config says `auth: 'public'`
// (only /healthz, the dashboard's static files, and /docs when
// MPO_PUBLIC_DOCS=1); `auth: 'admin'` routes need an admin token. Tokens are
// looked up by their sha256 and compared in constant time
// (TokenRepository.verify); the secret is never stored.
//
// Routes whose config says `authCookie: true` (bull-board under /admin/queues,
// which a browser navigates to and so cannot send a header) also accept the
// session cookie that `POST /session` sets for admin tokens (HttpOnly,
// SameSite=Strict, Path=/admin/queues). The cookie holds an opaque session id,
// never the token: the session lives in Redis (only the id's sha256 is a key)
// with an expiry, names its token, and the token is re-checked on every
// request (a revoked token stops working at once); state-changing requests
// authenticated by the cookie must come from the same origin.
import { randomBytes } from 'node:crypto';
import { digestsEqual, hashToken, settlesWithin, type TokenIdentity } from '@mpo/db';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody, UnavailableError, unavailableDependency } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: 'public' | 'token' | 'admin';
    /**
     * Also answer while Postgres is away (Prometheus's /metrics): the token is then checked against the
     * scrape token (MPO_METRICS_TOKEN) and the tokens Postgres confirmed in the last TOKEN_CACHE_MS.
     */
    authOffline?: boolean;
    /** Also accept the token from the session cookie (SESSION_COOKIE). */
    authCookie?: boolean;
  }
  interface FastifyRequest {
    identity: TokenIdentity | null;
  }
}

const TOKEN = '[A-Za-z0-9._~+/=-]{8,512}';
// The scheme is case-insensitive (RFC 7235 §2.1: "bearer", "BEARER" are Bearer); the token is not.
const BEARER = new RegExp(`^[Bb][Ee][Aa][Rr][Ee][Rr] +(${TOKEN})$`);

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export const bearerToken = (header: string | undefined): string | undefined =>
  header ? BEARER.exec(header)?.[1] : undefined;
/** A session id: 32 random bytes, base64url. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/** The session cookie: an admin token, for the pages under its path (bull-board). */
export const SESSION_COOKIE = 'mpo_admin_session';
export const SESSION_COOKIE_PATH = '/admin/queues';
export const SESSION_MAX_AGE_S = 8 * 3600;

const sessionKey = (app: FastifyInstance, id: string) => `${app.queues.prefix}:session:${hashToken(id)}`;

/** Starts a session for a token; returns its id (the cookie's value), valid for SESSION_MAX_AGE_S. */
export async function createSession(app: FastifyInstance, tokenId: string): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  await app.queues.redis.set(sessionKey(app, id), tokenId, 'EX', SESSION_MAX_AGE_S);
  return id;
}

/** Ends a session (sign-out); unknown ids are ignored. */
export async function endSession(app: FastifyInstance, id: string | undefined): Promise<void> {
  if (id && SESSION_ID.test(id)) await app.queues.redis.del(sessionKey(app, id));
}

/** The identity behind a session cookie: the session must exist and its token must still be active. */
async function sessionIdentity(app: FastifyInstance, id: string): Promise<TokenIdentity | null> {
  const tokenId = await app.queues.redis.get(sessionKey(app, id));
  return tokenId ? app.db.tokens.active(tokenId) : null;
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A state-changing request from another site (checked for cookie-authenticated requests only). */
function crossSite(req: FastifyRequest): boolean {
  if (SAFE_METHODS.has(req.method)) return false;
  const site = req.headers['sec-fetch-site'];
  if (site && site !== 'same-origin' && site !== 'none') return true;
  const origin = req.headers.origin;
  if (!origin) return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

/** How long a token Postgres confirmed stays good for `authOffline` routes while Postgres is away. */
export const TOKEN_CACHE_MS = 15 * 60_000;
/** A token check on an `authOffline` route waits this long for Postgres before counting it as away. */
export const OFFLINE_VERIFY_TIMEOUT_MS = 2_000;
const TOKEN_CACHE_MAX = 1_000;

/** The identity of the scrape token (MPO_METRICS_TOKEN): /metrics only, never stored in Postgres. */
export const SCRAPE_IDENTITY: TokenIdentity = {
  id: '00000000-0000-0000-0000-00000000005c',
  name: 'metrics scrape (MPO_METRICS_TOKEN)',
  isAdmin: false,
};

/**
 * Token checks for routes that must answer without Postgres: Postgres first
 * (bounded in time); when it is away, the scrape token, else the answer
 * Postgres gave for the same token at most TOKEN_CACHE_MS ago (a token revoked
 * during an outage keeps reading /metrics until Postgres is back or the entry
 * ages out). Keyed by sha256, like the database: no secret is kept.
 */
export class OfflineTokens {
  private readonly confirmed = new Map<string, { identity: TokenIdentity; at: number }>();
  private readonly scrapeDigest: string | undefined;

  constructor(scrapeToken: string | undefined) {
    this.scrapeDigest = scrapeToken ? hashToken(scrapeToken) : undefined;
  }

  isScrapeToken(secret: string): boolean {
    return this.scrapeDigest !== undefined && digestsEqual(hashToken(secret), this.scrapeDigest);
  }

  /** Remembers (or forgets, for null) what Postgres said about a token. */
  remember(secret: string, identity: TokenIdentity | null): void {
    const digest = hashToken(secret);
    this.confirmed.delete(digest);
    if (!identity) return;
    if (this.confirmed.size >= TOKEN_CACHE_MAX) this.confirmed.delete(this.confirmed.keys().next().value!);
    this.confirmed.set(digest, { identity, at: Date.now() });
  }

  recent(secret: string): TokenIdentity | null {
    const hit = this.confirmed.get(hashToken(secret));
    return hit && Date.now() - hit.at < TOKEN_CACHE_MS ? hit.identity : null;
  }

  /** The identity for an `authOffline` route; throws UnavailableError when Postgres is away and nothing vouches. */
  async verify(app: FastifyInstance, secret: string): Promise<TokenIdentity | null> {
    if (this.isScrapeToken(secret)) return SCRAPE_IDENTITY;
    let outcome: { identity: TokenIdentity | null } | { err: unknown } | undefined;
    const answered = await settlesWithin(
      app.db.tokens.verify(secret).then(
        (identity) => {
          outcome = { identity };
        },
        (err) => {
          outcome = { err };
        },
      ),
      OFFLINE_VERIFY_TIMEOUT_MS,
    );
    if (answered && outcome && 'identity' in outcome) {
      this.remember(secret, outcome.identity);
      return outcome.identity;
    }
    const err = outcome && 'err' in outcome ? outcome.err : undefined;
    if (err !== undefined && unavailableDependency(err) !== 'postgres') throw err;
    const recent = this.recent(secret);
    if (recent) return recent;
    throw new UnavailableError('postgres', { cause: err });
  }
}

/** The owner filter for repository calls: admins see every run, others their own. */
export const ownerFilter = (req: FastifyRequest): string | undefined =>
  req.identity?.isAdmin ? undefined : (req.identity?.id ?? '00000000-0000-0000-0000-000000000000');

export default fp(
  async (app, opts: { publicPrefixes?: string[]; metricsToken?: string }) => {
    const offline = new OfflineTokens(opts.metricsToken);
    app.decorateRequest('identity', null);
    app.addHook('onRequest', async (req, reply) => {
      const mode = req.routeOptions.config?.auth ?? 'token';
      if (mode === 'public') return;
      if (opts.publicPrefixes?.some((p) => req.url === p || req.url.startsWith(`${p}/`))) return;
      const header = req.headers.authorization;
      const secret = bearerToken(header);
      const session =
        !header && req.routeOptions.config?.authCookie
          ? readCookie(req.headers.cookie, SESSION_COOKIE)
          : undefined;
      if (!secret && !(session && SESSION_ID.test(session))) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send(errorBody(401, header ? 'malformed Authorization header' : 'a bearer token is required'));
      }
      if (session && crossSite(req)) {
        return reply.code(403).send(errorBody(403, 'cross-site request refused'));
      }
      const identity = !secret
        ? await sessionIdentity(app, session!)
        : req.routeOptions.config?.authOffline
          ? await offline.verify(app, secret)
          : await app.db.tokens.verify(secret).then((id) => {
              offline.remember(secret, id);
              return id;
            });
      if (!identity) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer error="invalid_token"')
          .send(
            errorBody(
              401,
              secret ? 'invalid or revoked token' : 'session expired, ended or its token revoked',
            ),
          );
      }
      req.identity = identity;
      req.log = req.log.child({ tokenId: identity.id });
      if (mode === 'admin' && !identity.isAdmin)
        return reply.code(403).send(errorBody(403, 'admin token required'));
    });
  },
  { name: 'auth', dependencies: ['db', 'queues'] },
);
