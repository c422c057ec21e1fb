// Bounded requests (issue 16, item 1): every input that made the API answer
// 500, hang or store hundreds of times the request's size, replayed against a
// real app on real Postgres and Redis.
import { randomUUID } from 'node:crypto';
import { createDb, type Db } from '@mpo/db';
import { evalJobData, JOB_TREE_BUDGET, parseRunSpec, trainJobData } from '@mpo/queue';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, roots, spec, testApp } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let db: Db;
let redis: Redis;
beforeAll(async () => {
  t = await testApp('bounds');
  db = createDb(DATABASE_URL);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await t.cleanup();
  await db.close();
  redis.disconnect();
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/runs',
    headers: { ...t.admin, 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
const get = (url: string) => t.app.inject({ method: 'GET', url, headers: t.admin });
const paths = (res: { json(): { problems?: Array<{ path: string }> } }) =>
  (res.json().problems ?? []).map((p) => p.path);

/** A tag the pattern accepts (any number of 8-letter subtags), of about `length` characters. */
function longTag(i: number, length: number): string {
  let tag = `zz-n${String(i).padStart(3, '0')}`;
  while (tag.length + 9 <= length) tag += '-abcdefgh';
  const rest = length - tag.length;
  return rest >= 3 ? `${tag}-${'a'.repeat(Math.min(8, rest - 1))}` : tag;
}
const seeds = (n: number) => Array.from({ length: n }, (_, i) => i);
const seedGrid = (n: number, over: Record<string, unknown> = {}) => ({
  strategy: 'grid',
  space: { 'training.seed': seeds(n) },
  metric: 'heldout/reward_gap',
  mode: 'max',
  ...over,
});

/** The issue's request: 32 language codes of 1,000 characters, a grid over 200 seeds (about 34 KB). */
const attack = (tagLength: number, trials = 200) =>
  spec({
    targetLanguages: Array.from({ length: 32 }, (_, i) => longTag(i, tagLength)),
    search: seedGrid(trials),
  });

describe('bounded run specs', () => {
  it('refuses the 34 KB amplification request before storing anything (before: ~600x in the issue)', async () => {
    const body = attack(1000);
    const requestBytes = Buffer.byteLength(JSON.stringify(body));
    expect(requestBytes).toBeGreaterThan(30_000);
    // What the old layout stored for it: the whole BullMQ tree in the outbox and again in Redis.
    const { spec: s, trials } = parseRunSpec(
      { ...body, targetLanguages: body.targetLanguages.map((_, i) => longTag(i, 8)) },
      { ...roots(), mustExist: false },
    );
    const withLongTags = { ...s, targetLanguages: body.targetLanguages as string[] };
    withLongTags.eval = { ...s.eval, languages: ['en', ...(body.targetLanguages as string[])] };
    const runId = randomUUID();
    const tree = trials.reduce((n, plan) => {
      const t = { trialId: randomUUID(), plan };
      const full = [trainJobData(runId, withLongTags, t), evalJobData(runId, withLongTags, t)];
      return n + Buffer.byteLength(JSON.stringify(full));
    }, 0);
    const before = (2 * tree) / requestBytes;
    console.log(`amplification before (old layout, JSON): ${before.toFixed(0)}x of ${requestBytes} B`);
    expect(before).toBeGreaterThan(300);

    const res = await post(body);
    expect(res.statusCode).toBe(400);
    expect(paths(res)).toContain('targetLanguages[0]');
    expect(res.json().detail).toMatch(/at most 35 characters/);
    expect((await db.runs.list({ limit: 200 })).items.some((r) => r.name === body.name)).toBe(false);
    // No job was added (the queues' meta keys are written when the app starts; the rate limiter counts the
    // token's requests under :ratelimit:).
    const jobKeys = (await redis.keys(`${t.prefix}:*`)).filter(
      (k) => !k.endsWith(':meta') && !k.includes(':ratelimit:'),
    );
    expect(jobKeys).toEqual([]);
  });

  it('refuses a job tree over its budget (trials × what each trial stores) and accepts one within it', async () => {
    // The run-level lists (32 tags of the longest length) are stored once, on the run: the issue's shape
    // now fits at the trial cap. Measured in the real stores by amplification.test.ts.
    const listsOnce = await post(attack(35, 1000));
    expect(listsOnce.statusCode, listsOnce.body).toBe(201);
    expect(listsOnce.json().trialCount).toBe(1000);
    // What each trial does store: its point, in both jobs and its row. 31 values of 2,000 characters
    // (mpo's rgdSource names a language, of any length), each in 31 trials (a grid with 31 seeds): every
    // byte of them stored about 4 × 31 times.
    const long = (trials: number) =>
      spec({
        search: seedGrid(0, {
          space: {
            rgdSource: Array.from({ length: 31 }, (_, i) => ({ language: `${i}`.padEnd(2000, 'x') })),
            'training.seed': seeds(trials),
          },
        }),
      });
    const over = long(31);
    const res = await post(over);
    expect(res.statusCode).toBe(400);
    expect(paths(res)).toEqual(['search']);
    expect(res.json().detail).toMatch(
      /961 trials of about \d+ bytes of jobs each would store more than \d+ bytes/,
    );
    expect((await db.runs.list({ limit: 200 })).items.some((r) => r.name === over.name)).toBe(false);
    const within = await post(long(2));
    expect(within.statusCode, within.body).toBe(201);
    expect(within.json().trialCount).toBe(62);
    const budget =
      JOB_TREE_BUDGET.requestFactor * Buffer.byteLength(JSON.stringify(long(2))) +
      JOB_TREE_BUDGET.perTrialBytes * 62;
    const stored = await db.runs.storedBytes(within.json().id);
    expect(stored.run + stored.trials + stored.outbox).toBeLessThan(budget);
  });

  it('bounds every string, list and integer of the spec with a 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ method: 'm'.repeat(10_000) }, 'method'],
      [{ hyperparameters: { ['b'.repeat(1000)]: 1 } }, 'hyperparameters'],
      [
        { hyperparameters: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i])) },
        'hyperparameters',
      ],
      [{ search: seedGrid(3, { space: { ['x'.repeat(500)]: [1] } }) }, 'search.space'],
      [{ eval: { benchmarks: ['reward-gap'], languages: [longTag(0, 40)] } }, 'eval.languages[0]'],
      [{ dominantLanguage: longTag(0, 40) }, 'dominantLanguage'],
    ];
    for (const [over, path] of cases) {
      const res = await post(spec(over));
      expect(res.statusCode, path).toBe(400);
      expect(paths(res), path).toContain(path);
    }
  });

  it('limits asha.maxSteps like training.steps (2^31, 1e9 and 1e7 + 1 were accepted or crashed)', async () => {
    for (const maxSteps of [2147483648, 1e9, 10_000_001]) {
      const res = await post(
        spec({
          search: {
            strategy: 'asha',
            space: { beta: { type: 'uniform', min: 0.1, max: 1 } },
            maxTrials: 3,
            metric: 'heldout/reward_gap',
            mode: 'max',
            asha: { minSteps: 1, maxSteps },
          },
          training: { batchSize: 8, microBatch: 2 },
        }),
      );
      expect(res.statusCode, String(maxSteps)).toBe(400);
      expect(paths(res)).toContain('search.asha.maxSteps');
      expect(res.json().detail).toMatch(/≤ 10000000/);
    }
  });

  it('refuses a grid over the trial cap with its size; a cut by maxTrials never drops values silently', async () => {
    const space = { beta: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 'training.seed': seeds(1000) };
    const noCap = await post(spec({ search: seedGrid(0, { space }) }));
    expect(noCap.statusCode).toBe(400);
    expect(noCap.json().detail).toMatch(/10 beta × 1000 training\.seed = 10000 points/);

    // The old cut kept the first 1,000 points: all of them β = 0.1.
    const cut = await post(spec({ search: seedGrid(0, { space, maxTrials: 1000 }) }));
    expect(cut.statusCode).toBe(400);
    expect(paths(cut)).toEqual(['search.maxTrials']);
    expect(cut.json().detail).toMatch(/would drop 9 of the 10 values of "beta" \(\[0\.2,0\.3/);

    // A cut that keeps a value of everything (the last seeds only) is accepted, as documented.
    const small = { beta: [0.5, 1], 'training.seed': [1, 2, 3] };
    const ok = await post(spec({ search: seedGrid(0, { space: small, maxTrials: 4 }) }));
    expect(ok.statusCode).toBe(201);
    expect(ok.json().trialCount).toBe(4);
  });

  it('answers a body nested 100,000 arrays deep with a 400, not a 500', async () => {
    const deep = JSON.stringify(spec()).replace(
      /"name":"[^"]*"/,
      `"name":${'['.repeat(100_000)}${']'.repeat(100_000)}`,
    );
    const res = await post(deep);
    expect(res.statusCode).toBe(400);
    expect(res.json().detail).toMatch(/nested deeper than 32 levels/);
    // A bracket inside a string is not nesting.
    const inString = await post(spec({ name: `run-${'['.repeat(100)}` }));
    expect(inString.statusCode).toBe(201);
  });
});

describe('bounded query parameters', () => {
  it('answers out-of-range since, offset and NUL bytes with 400 (they were 500s)', async () => {
    const run = (await post(spec())).json();
    for (const url of [
      `/runs/${run.id}/metrics?since=3000000000`,
      `/runs/${run.id}/metrics?name=%00`,
      `/runs/${run.id}/metrics?lang=a%00b`,
      `/runs/${run.id}/evaluations?benchmark=%00`,
      '/runs?offset=1e20',
      '/runs?limit=1e20',
    ]) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.json().problems[0].path, url).toMatch(/^querystring\./);
    }
    expect((await get(`/runs/${run.id}/metrics?since=2147483646`)).statusCode).toBe(200);
    expect((await get('/runs?offset=1000000')).statusCode).toBe(200);
  });
});

describe('Authorization scheme', () => {
  it('matches "Bearer" case-insensitively (RFC 7235 §2.1); the token itself stays exact', async () => {
    const token = t.admin.authorization.slice('Bearer '.length);
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      const res = await t.app.inject({
        method: 'GET',
        url: '/runs',
        headers: { authorization: `${scheme} ${token}` },
      });
      expect(res.statusCode, scheme).toBe(200);
    }
    const wrongCase = await t.app.inject({
      method: 'GET',
      url: '/runs',
      headers: { authorization: `Bearer ${token.toUpperCase()}` },
    });
    expect(wrongCase.statusCode).toBe(401);
  });
});
