// bull-board at /admin/queues: job-level inspection of every queue of this
// deployment (ALL_QUEUES under the deployment's prefix, through the app's
// shared Redis connection). Admin only: every route under the base path takes
// the admin token from the Authorization header or from the session cookie
// that the dashboard's sign-in (`POST /session`) sets for admin tokens, since
// a browser navigating here cannot send a header (see plugins/auth.ts).
// A browser that is not signed in gets a short HTML page pointing at the
// dashboard's sign-in instead of a JSON error.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyPluginAsync } from 'fastify';

export interface BullBoardPluginOptions {
  /** Where bull-board lives (default /admin/queues; the session cookie's path must match). */
  basePath: string;
  /** No job actions (retry, remove, clean, pause), inspection only. */
  readOnly: boolean;
}

// bull-board's page links a web font from Google and uses inline styles: this CSP keeps
// the browser on this origin (the font falls back to the system's).
export const BULL_BOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function refusedPage(status: number, message: string): string {
  const title = status === 403 ? 'Admin token required' : 'Sign-in required';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · MPO queues</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1b1f24}a{color:#0b5cad}</style>
</head><body><main>
<h1>${title}</h1>
<p>The job inspector (bull-board) is for admin tokens. ${escapeHtml(message)}.</p>
<p><a href="/#/signin">Sign in on the dashboard</a> with an admin token, then follow its “Job inspector” link.</p>
</main></body></html>`;
}

const bullBoardPlugin: FastifyPluginAsync<BullBoardPluginOptions> = async (app, opts) => {
  // Every route registered below (bull-board's pages, API and static files) is admin-only,
  // with the session cookie accepted in place of the header.
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config ?? {}), auth: 'admin', authCookie: true };
  });
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('content-security-policy', BULL_BOARD_CSP);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    const code = reply.statusCode;
    if ((code !== 401 && code !== 403) || !req.headers.accept?.includes('text/html')) return payload;
    let message = code === 403 ? 'This token is not an admin token' : 'You are not signed in';
    try {
      message = (JSON.parse(String(payload)) as { detail?: string }).detail ?? message;
    } catch {}
    reply.type('text/html; charset=utf-8');
    return refusedPage(code, message);
  });

  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(opts.basePath);
  createBullBoard({
    queues: [...app.queues.byName.values()].map(
      (q) =>
        new BullMQAdapter(q, {
          readOnlyMode: opts.readOnly,
          allowRetries: !opts.readOnly,
          description: `prefix ${app.queues.prefix}`,
        }),
    ),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'MPO queues',
        miscLinks: [{ text: 'Dashboard', url: '/' }],
      },
    },
  });
  await app.register(serverAdapter.registerPlugin(), { prefix: opts.basePath });
};

export default bullBoardPlugin;
