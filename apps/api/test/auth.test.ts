import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loggerOptions } from '../src/app.js';
import { spec, testApp } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let alice: { authorization: string };
let bob: { authorization: string };
let aliceRun: string;
let bobRun: string;

beforeAll(async () => {
  t = await testApp('auth');
  const issue = async (name: string, admin = false) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/tokens',
      headers: t.admin,
      payload: { name, admin },
    });
    expect(res.statusCode).toBe(201);
    return res.json() as { id: string; token: string; isAdmin: boolean };
  };
  alice = { authorization: `Bearer ${(await issue('alice')).token}` };
  bob = { authorization: `Bearer ${(await issue('bob')).token}` };
  const create = async (headers: { authorization: string }) =>
    (await t.app.inject({ method: 'POST', url: '/runs', headers, payload: spec() })).json().id as string;
  aliceRun = await create(alice);
  bobRun = await create(bob);
});
afterAll(() => t.cleanup());

const call = (
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  headers: Record<string, string> = {},
  payload?: object,
) => t.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });

describe('auth matrix', () => {
  // Every route and what a valid non-admin token gets.
  const routes = (): Array<[string, 'GET' | 'POST' | 'DELETE', string, object | undefined, number]> => [
    ['list runs', 'GET', '/runs', undefined, 200],
    ['create run', 'POST', '/runs', spec(), 201],
    ['get run', 'GET', `/runs/${aliceRun}`, undefined, 200],
    ['metrics', 'GET', `/runs/${aliceRun}/metrics`, undefined, 200],
    ['queues', 'GET', '/queues', undefined, 200],
    ['readyz', 'GET', '/readyz', undefined, 200],
    ['prometheus', 'GET', '/metrics', undefined, 200],
    ['openapi', 'GET', '/docs/json', undefined, 200],
    ['issue token', 'POST', '/tokens', { name: 'x' }, 403],
    ['revoke token', 'DELETE', `/tokens/${randomUUID()}`, undefined, 403],
  ];

  it('lets /healthz through without a token', async () => {
    expect((await call('GET', '/healthz')).statusCode).toBe(200);
  });

  it('answers 401 without a token, with a malformed header, or a wrong token, on every other route', async () => {
    for (const [what, method, url, body] of routes()) {
      for (const headers of [
        {},
        { authorization: 'Basic dXNlcjpwYXNz' },
        { authorization: 'Bearer' },
        { authorization: `Bearer mpo_${randomUUID()}` },
      ]) {
        const res = await call(method, url, headers, body);
        expect(res.statusCode, `${what} with ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      }
    }
    // Unknown routes too: nothing is discoverable without a token.
    expect((await call('GET', '/nope')).statusCode).toBe(401);
  });

  it('gives a user token the user routes and 403 on admin routes; the admin token everything', async () => {
    for (const [what, method, url, body, expected] of routes()) {
      expect((await call(method, url, alice, body)).statusCode, `${what} as alice`).toBe(expected);
    }
    for (const [what, method, url, body, expected] of routes()) {
      const res = await call(method, url, t.admin, body);
      const want = what === 'issue token' ? 201 : what === 'revoke token' ? 404 : expected;
      expect(res.statusCode, `${what} as admin`).toBe(want);
    }
  });

  it('stops accepting a revoked token', async () => {
    const issued = (await call('POST', '/tokens', t.admin, { name: 'temp' })).json();
    const h = { authorization: `Bearer ${issued.token}` };
    expect((await call('GET', '/runs', h)).statusCode).toBe(200);
    expect((await call('DELETE', `/tokens/${issued.id}`, t.admin)).statusCode).toBe(204);
    expect((await call('GET', '/runs', h)).statusCode).toBe(401);
  });

  it('keeps a revoked MPO_ADMIN_TOKEN revoked across restarts: the API refuses to start with it and says why', async () => {
    const secret = `bootstrap-${randomUUID()}`;
    const first = await testApp('bootstrap', { adminToken: secret });
    let id: string;
    try {
      const me = await first.app.inject({
        method: 'POST',
        url: '/session',
        headers: { authorization: `Bearer ${secret}` },
      });
      id = me.json().id;
      expect(
        (await first.app.inject({ method: 'DELETE', url: `/tokens/${id}`, headers: t.admin })).statusCode,
      ).toBe(204);
      expect(
        (
          await first.app.inject({
            method: 'GET',
            url: '/runs',
            headers: { authorization: `Bearer ${secret}` },
          })
        ).statusCode,
      ).toBe(401);
    } finally {
      await first.cleanup();
    }
    // The restart used to revive it (upsert cleared revokedAt).
    await expect(testApp('bootstrap-again', { adminToken: secret })).rejects.toThrow(
      new RegExp(`MPO_ADMIN_TOKEN is token ${id!}, revoked at .*never revived`),
    );
  });

  it('lets an issued admin token issue tokens', async () => {
    const issued = (await call('POST', '/tokens', t.admin, { name: 'ops', admin: true })).json();
    expect(issued.isAdmin).toBe(true);
    const res = await call('POST', '/tokens', { authorization: `Bearer ${issued.token}` }, { name: 'y' });
    expect(res.statusCode).toBe(201);
  });
});

describe('logs', () => {
  it('redact bearer tokens, cookies, Set-Cookie and judge keys', () => {
    const lines: string[] = [];
    const log = pino(loggerOptions('info'), { write: (l: string) => void lines.push(l) });
    log.info(
      {
        req: { headers: { authorization: 'Bearer mpo_secret_token', cookie: 'mpo_admin_session=abc' } },
        res: { headers: { 'set-cookie': 'mpo_admin_session=abc; HttpOnly' } },
        judge: { apiKey: 'sk-judge-key' },
        env: { MPO_JUDGE_API_KEY: 'sk-judge-key' },
      },
      'request',
    );
    expect(lines.join('')).not.toMatch(/mpo_secret_token|abc|sk-judge-key/);
    expect(lines.join('')).toContain('[redacted]');
  });
});

describe('ownership', () => {
  it('shows a token only its own runs', async () => {
    const mine = (await call('GET', '/runs?limit=200', alice)).json();
    expect(mine.items.map((r: { id: string }) => r.id)).toContain(aliceRun);
    expect(mine.items.map((r: { id: string }) => r.id)).not.toContain(bobRun);
    for (const [method, url] of [
      ['GET', `/runs/${bobRun}`],
      ['GET', `/runs/${bobRun}/metrics`],
      ['POST', `/runs/${bobRun}/cancel`],
    ] as const) {
      expect((await call(method, url, alice)).statusCode, `${method} ${url}`).toBe(404);
    }
    expect((await call('GET', `/runs/${bobRun}`, bob)).statusCode).toBe(200);
  });

  it('shows the admin every run', async () => {
    const all = (await call('GET', '/runs?limit=200', t.admin)).json();
    const ids = all.items.map((r: { id: string }) => r.id);
    expect(ids).toEqual(expect.arrayContaining([aliceRun, bobRun]));
    expect((await call('GET', `/runs/${bobRun}`, t.admin)).statusCode).toBe(200);
  });

  it('keys idempotency per token: two tokens with one key get two runs', async () => {
    const key = randomUUID();
    const a = await call('POST', '/runs', { ...alice, 'idempotency-key': key }, spec());
    const b = await call('POST', '/runs', { ...bob, 'idempotency-key': key }, spec());
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(201);
    expect(a.json().id).not.toBe(b.json().id);
  });
});

describe('public docs', () => {
  it('serves /docs without a token only when configured to', async () => {
    const open = await testApp('docs', { publicDocs: true });
    try {
      expect((await open.app.inject({ method: 'GET', url: '/docs/json' })).statusCode).toBe(200);
      expect((await open.app.inject({ method: 'GET', url: '/runs' })).statusCode).toBe(401);
    } finally {
      await open.cleanup();
    }
  });
});
