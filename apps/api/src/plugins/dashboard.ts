// The ops dashboard: the static build of apps/api/dashboard (written to
// dist/dashboard by `npm run build`), served at / by @fastify/static on the
// API's own origin. The files are public (the page must load before anyone can
// sign in) and hold no data: everything shown comes from the API with the
// bearer token the user signs in with. Only the built files get routes
// (wildcard off), so unknown paths keep the API's JSON 404. Hashed assets are
// cached for good; index.html is revalidated; a strict CSP allows nothing but
// this origin.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../errors.js';

export interface DashboardPluginOptions {
  /** The built dashboard (default: apps/api/dist/dashboard). */
  dir?: string;
}

/** apps/api/dist/dashboard, from src/plugins (tests) and dist/plugins (built) alike. */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../dist/dashboard/', import.meta.url));

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const dashboardPlugin: FastifyPluginAsync<DashboardPluginOptions> = async (app, opts) => {
  const root = opts.dir ?? DEFAULT_DASHBOARD_DIR;
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config ?? {}), auth: 'public' };
  });
  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, 'dashboard not built; GET / explains how to build it');
    app.get('/', { schema: { hide: true } }, async (_req, reply) =>
      reply.code(503).send(errorBody(503, 'the dashboard is not built: run `npm run build -w @mpo/api`')),
    );
    return;
  }
  const assets = join(root, 'assets');
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    redirect: false,
    dotfiles: 'deny',
    cacheControl: false,
    setHeaders(reply, path) {
      reply.headers({
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
        // Assets carry a content hash in their names; index.html names the current ones.
        'cache-control': path.startsWith(assets) ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
    },
  });
};

export default dashboardPlugin;
