// The dashboard's static files, POST/DELETE /session and bull-board's auth, through inject
// (the browser side is test/dashboard.e2e.test.ts).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDashboard } from '../dashboard/build.mjs';
import { SESSION_COOKIE } from '../src/plugins/auth.js';
import { ADMIN_TOKEN, testApp } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let userToken: string;
let userTokenId: string;
const cookieOf = (value: string) => `${SESSION_COOKIE}=${encodeURIComponent(value)}`;
/** Signs in with `token` (POST /session) and returns the session cookie it set ("name=value"). */
async function sessionOf(token: string): Promise<string> {
  const res = await t.app.inject({
    method: 'POST',
    url: '/session',
    headers: { authorization: `Bearer ${token}` },
  });
  const set = String(res.headers['set-cookie'] ?? '');
  expect(set, 'a session cookie').toMatch(new RegExp(`^${SESSION_COOKIE}=`));
  return set.split(';')[0]!;
}
let adminCookie: string;

beforeAll(async () => {
  const { outDir } = await buildDashboard({ outDir: mkdtempSync(join(tmpdir(), 'mpo-dashboard-')) });
  t = await testApp('session', { dashboardDir: outDir });
  const res = await t.app.inject({
    method: 'POST',
    url: '/tokens',
    headers: t.admin,
    payload: { name: 'session-test user' },
  });
  userToken = res.json().token;
  userTokenId = res.json().id;
  adminCookie = await sessionOf(ADMIN_TOKEN);
});
afterAll(async () => {
  await t.cleanup();
});

describe('the dashboard files', () => {
  it('serves index.html at / without a token, with a strict CSP and no data in it', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.body).not.toMatch(/https?:\/\//); // nothing from another origin
    const js = /src="(\/assets\/app-[^"]+\.js)"/.exec(res.body)?.[1];
    const css = /href="(\/assets\/styles-[^"]+\.css)"/.exec(res.body)?.[1];
    expect(js && css).toBeTruthy();
    const asset = await t.app.inject({ method: 'GET', url: js! });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-type']).toMatch(/javascript/);
    expect(asset.headers['cache-control']).toContain('immutable');
    expect((await t.app.inject({ method: 'GET', url: css! })).statusCode).toBe(200);
  });

  it('leaves every API route behind the token', async () => {
    for (const url of ['/runs', '/queues', '/assets/../runs']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode, url).toBe(401);
    }
  });
});

describe('POST /session', () => {
  it('needs a valid token', async () => {
    expect((await t.app.inject({ method: 'POST', url: '/session' })).statusCode).toBe(401);
    const bad = await t.app.inject({
      method: 'POST',
      url: '/session',
      headers: { authorization: 'Bearer not-a-real-token-123' },
    });
    expect(bad.statusCode).toBe(401);
    expect(bad.json()).toMatchObject({
      status: 401,
      title: 'Unauthorized',
      detail: 'invalid or revoked token',
    });
    expect(bad.headers['set-cookie']).toBeUndefined();
  });

  it('answers who a user token is, and sets no cookie for it', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/session',
      headers: { authorization: `Bearer ${userToken}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      id: userTokenId,
      name: 'session-test user',
      isAdmin: false,
      adminCookie: false,
    });
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('sets an HttpOnly, SameSite=Strict cookie scoped to /admin/queues holding an opaque session id, not the token', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/session', headers: t.admin });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ isAdmin: true, adminCookie: true });
    const cookie = String(res.headers['set-cookie']);
    expect(cookie).not.toContain(encodeURIComponent(ADMIN_TOKEN));
    expect(cookie).toMatch(new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43};`));
    // A new id per sign-in.
    expect(cookie.split(';')[0]).not.toBe(adminCookie);
    expect(cookie).toMatch(/; Path=\/admin\/queues(;|$)/);
    expect(cookie).toMatch(/; HttpOnly(;|$)/);
    expect(cookie).toMatch(/; SameSite=Strict(;|$)/);
    expect(cookie).toMatch(/; Max-Age=\d+/);
    expect(cookie).not.toMatch(/Secure/); // plain http here; https requests or MPO_SECURE_COOKIE=1 add it
  });

  it('marks the cookie Secure when a TLS-terminating proxy says the request came over https', async () => {
    for (const headers of [{ 'x-forwarded-proto': 'https' }, { forwarded: 'for=10.0.0.1;proto=https' }]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/session',
        headers: { ...t.admin, ...headers },
      });
      expect(String(res.headers['set-cookie']), JSON.stringify(headers)).toMatch(/; Secure(;|$)/);
      const out = await t.app.inject({ method: 'DELETE', url: '/session', headers });
      expect(String(out.headers['set-cookie'])).toMatch(/; Secure(;|$)/);
    }
  });

  it('DELETE /session ends the session server-side: its id stops working', async () => {
    const cookie = await sessionOf(ADMIN_TOKEN);
    expect(
      (await t.app.inject({ method: 'GET', url: '/admin/queues', headers: { cookie } })).statusCode,
    ).toBe(200);
    await t.app.inject({ method: 'DELETE', url: '/session', headers: { cookie } });
    expect(
      (await t.app.inject({ method: 'GET', url: '/admin/queues', headers: { cookie } })).statusCode,
    ).toBe(401);
  });

  it('DELETE /session clears the cookie without a token', async () => {
    const res = await t.app.inject({ method: 'DELETE', url: '/session' });
    expect(res.statusCode).toBe(204);
    expect(String(res.headers['set-cookie'])).toMatch(
      new RegExp(`^${SESSION_COOKIE}=; Path=/admin/queues; Max-Age=0`),
    );
  });
});

describe('bull-board at /admin/queues', () => {
  const get = (headers: Record<string, string> = {}, url = '/admin/queues') =>
    t.app.inject({ method: 'GET', url, headers });

  it('refuses anonymous requests (an HTML page pointing at the sign-in for browsers)', async () => {
    expect((await get()).statusCode).toBe(401);
    const html = await get({ accept: 'text/html' });
    expect(html.statusCode).toBe(401);
    expect(html.headers['content-type']).toMatch(/text\/html/);
    expect(html.body).toContain('Sign-in required');
    expect(html.body).toContain('href="/#/signin"');
    expect((await get({}, '/admin/queues/api/queues')).statusCode).toBe(401);
  });

  it('refuses user tokens, and a token (or anything but a live session id) in the cookie', async () => {
    expect((await get({ authorization: `Bearer ${userToken}` })).statusCode).toBe(403);
    expect((await get({ cookie: cookieOf(userToken) })).statusCode).toBe(401);
    expect((await get({ cookie: cookieOf(ADMIN_TOKEN) })).statusCode).toBe(401);
    expect((await get({ cookie: cookieOf('A'.repeat(43)) })).statusCode).toBe(401);
  });

  it('serves the board and its API to the admin token, by header or by the session cookie', async () => {
    const page = await get({ cookie: adminCookie });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<base href="/admin/queues/"');
    expect(page.headers['content-security-policy']).toContain("font-src 'self'");
    const api = await get({ cookie: `other=1; ${adminCookie}` }, '/admin/queues/api/queues');
    expect(api.statusCode).toBe(200);
    const names = api
      .json()
      .queues.map((q: { name: string }) => q.name)
      .sort();
    expect(names).toEqual(['eval-cpu', 'eval-gpu', 'sweep', 'train-cpu', 'train-gpu']);
    expect((await get(t.admin, '/admin/queues/api/queues')).statusCode).toBe(200);
  });

  it('does not take the cookie anywhere else', async () => {
    expect((await get({ cookie: adminCookie }, '/runs')).statusCode).toBe(401);
    expect((await get({ cookie: adminCookie }, '/queues')).statusCode).toBe(401);
  });

  it('refuses cross-site state changes made with the cookie', async () => {
    const res = await t.app.inject({
      method: 'PUT',
      url: '/admin/queues/api/queues/sweep/pause',
      headers: { cookie: adminCookie, origin: 'https://evil.example', host: 'localhost:80' },
    });
    expect(res.statusCode).toBe(403);
    const site = await t.app.inject({
      method: 'PUT',
      url: '/admin/queues/api/queues/sweep/pause',
      headers: { cookie: adminCookie, 'sec-fetch-site': 'cross-site' },
    });
    expect(site.statusCode).toBe(403);
  });

  it('is read-only unless an admin turns writes on (MPO_BULL_BOARD_WRITES=1)', async () => {
    const pause = (app: typeof t.app) =>
      app.inject({ method: 'PUT', url: '/admin/queues/api/queues/sweep/pause', headers: t.admin });
    const refused = await pause(t.app);
    expect(refused.statusCode).toBeGreaterThanOrEqual(400);
    expect(await t.app.queues.byName.get('sweep')!.isPaused()).toBe(false);
    const writable = await testApp('session-writes', { bullBoardReadOnly: false });
    try {
      expect((await pause(writable.app)).statusCode).toBeLessThan(300);
      expect(await writable.app.queues.byName.get('sweep')!.isPaused()).toBe(true);
    } finally {
      await writable.cleanup();
    }
  });

  it('stops taking a revoked admin token at once', async () => {
    const issued = await t.app.inject({
      method: 'POST',
      url: '/tokens',
      headers: t.admin,
      payload: { name: 'session-test admin', admin: true },
    });
    const { token, id } = issued.json();
    const cookie = await sessionOf(token);
    expect((await get({ cookie })).statusCode).toBe(200);
    await t.app.inject({ method: 'DELETE', url: `/tokens/${id}`, headers: t.admin });
    expect((await get({ cookie })).statusCode).toBe(401);
  });
});
