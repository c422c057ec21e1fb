// GET /runs/:id/generations: the prompts, responses and verdicts behind a run's attack-success rates.
import { randomUUID } from 'node:crypto';
import { createDb, type Db, type NewGeneration } from '@mpo/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAllTrials, DATABASE_URL, spec, testApp } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let db: Db;
beforeAll(async () => {
  t = await testApp('generations');
  db = createDb(DATABASE_URL);
});
afterAll(async () => {
  await t.cleanup();
  await db.close();
});

const get = (url: string) => t.app.inject({ method: 'GET', url, headers: t.admin });
const gen = (language: string, promptId: string, verdict: NewGeneration['verdict']): NewGeneration => ({
  benchmark: 'multijail',
  language,
  promptId,
  prompt: `p${promptId}`,
  response: `r${promptId}`,
  verdict,
  judge: 'builtin:refusal-detector',
});

describe('GET /runs/:id/generations', () => {
  it('lists by trial, language and verdict, pages with a cursor, and rejects bad filters with a 400', async () => {
    const created = await t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: spec() });
    const id = created.json().id;
    await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
    const run = await db.runs.get(id);
    const trialId = run.trials[1]!.id;
    await db.generations.replace({ trialId }, [
      gen('zh', '1', 'safe'),
      gen('zh', '2', 'unsafe'),
      gen('sw', '1', 'irrelevant'),
      gen('en', '1', 'safe'),
    ]);
    const zh = (await get(`/runs/${id}/generations?language=zh&trialId=${trialId}`)).json();
    expect(zh.total).toBe(2);
    expect(zh.generations.map((g: { promptId: string }) => g.promptId)).toEqual(['1', '2']);
    expect(zh.generations[1]).toMatchObject({
      trialIndex: 1,
      verdict: 'unsafe',
      prompt: 'p2',
      response: 'r2',
    });
    const success = (await get(`/runs/${id}/generations?attackSuccess=true`)).json();
    expect(success.generations.map((g: { language: string }) => g.language)).toEqual(['sw', 'zh']);
    const first = (await get(`/runs/${id}/generations?limit=3`)).json();
    expect(first.generations).toHaveLength(3);
    const rest = (await get(`/runs/${id}/generations?limit=3&cursor=${first.nextCursor}`)).json();
    expect(rest.generations).toHaveLength(1);
    expect(rest.nextCursor).toBeNull();
    const bad = await get(`/runs/${id}/generations?verdict=maybe`);
    expect(bad.statusCode).toBe(400);
    expect((await get(`/runs/${id}/generations?limit=0`)).statusCode).toBe(400);
    expect((await get(`/runs/${randomUUID()}/generations`)).statusCode).toBe(404);
  });
});
