// Quotas and rate limits per token (issue 16, item 2): a token over its
// unfinished trials, its rank-steps in flight or its requests per minute gets
// 429 with Retry-After (an RFC 9457 problem document), nothing of the refused
// request is stored, and an admin can raise the token's limits. Real app, real
// Postgres and Redis; each test issues its own token so counts do not mix.
import { randomUUID } from 'node:crypto';
import { createDb, type Db } from '@mpo/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { DATABASE_URL, spec, testApp } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let db: Db;
beforeAll(async () => {
  t = await testApp('quotas');
  db = createDb(DATABASE_URL);
});
afterAll(async () => {
  await t.cleanup();
  await db.close();
});

type Quotas = {
  maxActiveTrials?: number | null;
  maxRankSteps?: number | null;
  rateLimitPerMinute?: number | null;
};

async function issue(quotas: Quotas, app = t) {
  const res = await app.app.inject({
    method: 'POST',
    url: '/tokens',
    headers: app.admin,
    payload: { name: `quota-${randomUUID().slice(0, 8)}`, quotas },
  });
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json() as { id: string; token: string; quotas: Quotas };
  return { id: body.id, quotas: body.quotas, headers: { authorization: `Bearer ${body.token}` } };
}

const setQuotas = (id: string, quotas: Quotas, headers = t.admin) =>
  t.app.inject({ method: 'PATCH', url: `/tokens/${id}`, headers, payload: { quotas } });
const postRun = (headers: Record<string, string>, app = t) =>
  app.app.inject({ method: 'POST', url: '/runs', headers, payload: spec() });
const storedRuns = async (ownerTokenId: string) => (await db.runs.list({ ownerTokenId })).total;

function expect429(res: Awaited<ReturnType<typeof postRun>>, detail: RegExp) {
  expect(res.statusCode, res.body).toBe(429);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  const problem = res.json();
  expect(problem).toMatchObject({ type: 'about:blank', title: 'Too Many Requests', status: 429 });
  expect(problem.detail).toMatch(detail);
}

// helpers.spec(): a grid of 3 β values, 2 ranks per trial, 20 steps: 3 trials, 3 × 2 × 20 = 120 rank-steps.
const TRIALS_PER_RUN = 3;
const RANK_STEPS_PER_RUN = TRIALS_PER_RUN * 2 * 20;

describe('trial quotas', () => {
  it('refuses a run past the queued + running trial quota, stores nothing, and lets an admin raise it', async () => {
    const tok = await issue({ maxActiveTrials: TRIALS_PER_RUN + 1 });
    expect(tok.quotas).toEqual({ maxActiveTrials: 4, maxRankSteps: null, rateLimitPerMinute: null });
    expect((await postRun(tok.headers)).statusCode).toBe(201);
    const refused = await postRun(tok.headers);
    expect429(
      refused,
      /3 trials would exceed the token's quota of 4 queued and running trials \(3 unfinished\)/,
    );
    expect(await storedRuns(tok.id)).toBe(1);

    // Only an admin sets quotas.
    expect((await setQuotas(tok.id, { maxActiveTrials: 100 }, tok.headers)).statusCode).toBe(403);
    const raised = await setQuotas(tok.id, { maxActiveTrials: 2 * TRIALS_PER_RUN });
    expect(raised.statusCode, raised.body).toBe(200);
    expect(raised.json()).toMatchObject({ id: tok.id, revoked: false, quotas: { maxActiveTrials: 6 } });
    expect((await postRun(tok.headers)).statusCode).toBe(201);
    expect(await storedRuns(tok.id)).toBe(2);
    expect429(await postRun(tok.headers), /quota of 6/);
    // null hands the token back to the deployment's default (10,000 trials here).
    expect((await setQuotas(tok.id, { maxActiveTrials: null })).json().quotas.maxActiveTrials).toBeNull();
    expect((await postRun(tok.headers)).statusCode).toBe(201);
  });

  it('answers an idempotent replay of a stored run even when the token is at its quota', async () => {
    const tok = await issue({ maxActiveTrials: TRIALS_PER_RUN });
    const body = spec();
    const headers = { ...tok.headers, 'idempotency-key': `quota-${randomUUID()}` };
    const post = () => t.app.inject({ method: 'POST', url: '/runs', headers, payload: body });
    const first = await post();
    expect(first.statusCode).toBe(201);
    const replay = await post();
    expect(replay.statusCode, replay.body).toBe(200);
    expect(replay.json().id).toBe(first.json().id);
    // A new run (no key) is still refused.
    expect429(await postRun(tok.headers), /quota of 3 queued and running trials \(3 unfinished\)/);
    expect(await storedRuns(tok.id)).toBe(1);
  });

  it('refuses a run past the rank-steps in flight quota (trials × ranks × steps), stores nothing, and lets an admin raise it', async () => {
    const tok = await issue({ maxRankSteps: RANK_STEPS_PER_RUN + 80 });
    const first = await postRun(tok.headers);
    expect(first.statusCode).toBe(201);
    // One trial created so far (the others are created lazily): the two not created count as queued,
    // with the rank-steps the run planned for them.
    expect((await db.runs.get(first.json().id)).trials).toHaveLength(1);
    expect(await db.tokens.usage(tok.id)).toEqual({ activeTrials: 3, rankSteps: 120 });
    expect429(
      await postRun(tok.headers),
      /120 rank-steps \(trials × ranks × steps\) would exceed the token's quota of 200 rank-steps in flight \(120 in unfinished trials\)/,
    );
    expect(await storedRuns(tok.id)).toBe(1);
    expect(
      (await setQuotas(tok.id, { maxRankSteps: 2 * RANK_STEPS_PER_RUN })).json().quotas.maxRankSteps,
    ).toBe(240);
    expect((await postRun(tok.headers)).statusCode).toBe(201);
    expect(await storedRuns(tok.id)).toBe(2);
  });

  it('applies the deployment defaults to a token without its own quotas', async () => {
    const small = await testApp('quotas-defaults', {
      quotaDefaults: { maxActiveTrials: TRIALS_PER_RUN, maxRankSteps: 1e12, rateLimitPerMinute: 6000 },
    });
    try {
      const tok = await issue({}, small);
      expect(tok.quotas).toEqual({ maxActiveTrials: null, maxRankSteps: null, rateLimitPerMinute: null });
      expect((await postRun(tok.headers, small)).statusCode).toBe(201);
      expect429(await postRun(tok.headers, small), /quota of 3 queued and running trials/);
      expect(await storedRuns(tok.id)).toBe(1);
    } finally {
      await small.cleanup();
    }
  });

  it('answers 404 for an unknown token and 400 for a negative quota', async () => {
    expect((await setQuotas(randomUUID(), { maxActiveTrials: 1 })).statusCode).toBe(404);
    const tok = await issue({});
    const bad = await setQuotas(tok.id, { maxActiveTrials: -1 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().problems[0].path).toBe('body.quotas.maxActiveTrials');
  });
});

describe('rate limit', () => {
  it('answers 429 with Retry-After past the requests per minute of a token, per token, and an admin can raise it', async () => {
    const tok = await issue({ rateLimitPerMinute: 3 });
    const other = await issue({ rateLimitPerMinute: 3 });
    const list = (headers: Record<string, string>) => t.app.inject({ method: 'GET', url: '/runs', headers });
    for (let i = 0; i < 3; i++) expect((await list(tok.headers)).statusCode).toBe(200);
    const limited = await list(tok.headers);
    expect429(limited, /rate limit of 3 requests per minute for this token exceeded/);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    // A refused POST /runs stores nothing.
    expect429(await postRun(tok.headers), /rate limit of 3/);
    expect(await storedRuns(tok.id)).toBe(0);
    // Keyed by token: another token's count is its own.
    expect((await list(other.headers)).statusCode).toBe(200);
    // The admin raises the limit; the token's count so far (5) is now under it.
    expect((await setQuotas(tok.id, { rateLimitPerMinute: 10 })).statusCode).toBe(200);
    expect((await list(tok.headers)).statusCode).toBe(200);
  });

  it('reads its defaults from the environment, high enough for the dashboard and the tests', () => {
    const defaults = loadConfig({}).quotaDefaults;
    // The dashboard polls a few endpoints every few seconds; 6,000 a minute is 100 a second.
    expect(defaults.rateLimitPerMinute).toBeGreaterThanOrEqual(6000);
    expect(
      loadConfig({ MPO_MAX_ACTIVE_TRIALS: '7', MPO_MAX_RANK_STEPS: '8', MPO_RATE_LIMIT_PER_MINUTE: '9' })
        .quotaDefaults,
    ).toEqual({ maxActiveTrials: 7, maxRankSteps: 8, rateLimitPerMinute: 9 });
  });
});
