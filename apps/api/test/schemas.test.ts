// GET /schemas/<name>.schema.json serves the repository's published JSON Schemas without a token; POST /runs
// names the deprecated training fields a spec used as warnings, and still runs it.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spec, testApp } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
let t: Awaited<ReturnType<typeof testApp>>;
beforeAll(async () => {
  t = await testApp('schemas');
});
afterAll(async () => {
  await t.cleanup();
});

describe('GET /schemas', () => {
  it('serves each published schema, the same text as schemas/, without a token', async () => {
    for (const name of ['train-config', 'run-spec']) {
      const file = readFileSync(join(repo, 'schemas', `${name}.schema.json`), 'utf8');
      for (const url of [`/schemas/${name}.schema.json`, `/schemas/${name}.json`]) {
        const res = await t.app.inject({ method: 'GET', url });
        expect(res.statusCode, url).toBe(200);
        expect(res.headers['content-type']).toMatch(/^application\/schema\+json/);
        expect(res.body).toBe(file);
      }
    }
  });

  it('answers an unknown schema with a 404 problem naming the published ones', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/schemas/nope.schema.json' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().detail).toMatch(/train-config\.schema\.json, run-spec\.schema\.json/);
  });
});

describe('POST /runs training names', () => {
  const post = (body: unknown) =>
    t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: body as object });

  it('accepts the old names steps/microBatch with a warning each, and the new ones without', async () => {
    const old = await post(spec({ training: { steps: 20, batchSize: 8, microBatch: 2 } }));
    expect(old.statusCode, old.body).toBe(201);
    expect(old.json().warnings).toEqual([
      'training.steps: deprecated, use training.maxSteps',
      'training.microBatch: deprecated, use training.microBatchSize',
    ]);
    const now = await post(spec({ $schema: '../../schemas/run-spec.schema.json' }));
    expect(now.statusCode, now.body).toBe(201);
    expect(now.json().warnings).toBeUndefined();
  });
});
