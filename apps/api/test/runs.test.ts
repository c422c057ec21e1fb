import { randomUUID } from 'node:crypto';
import { createDb, type Db, SKETCH_CAP } from '@mpo/db';
import { evalQueue, jobIds, parseTrialJobRef, QUEUES, redisKeys, trainQueue } from '@mpo/queue';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { createAllTrials, DATABASE_URL, REDIS_URL, spec, testApp, trainJobOf } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let db: Db;
let redis: Redis;
beforeAll(async () => {
  t = await testApp('runs');
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
    headers: { ...t.admin, ...headers },
    payload: body as object,
  });
const get = (url: string) => t.app.inject({ method: 'GET', url, headers: t.admin });

describe('POST /runs', () => {
  it('creates the run and its trials, and lands the flow in Redis with slot requirements', async () => {
    const res = await post(spec());
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body).toMatchObject({ status: 'PENDING', trialCount: 3, queued: true });
    expect(res.headers.location).toBe(`/runs/${body.id}`);
    const producer = new FlowProducer({ connection: redis, prefix: t.prefix });
    const tree = await producer.getFlow({
      id: jobIds.run(body.id),
      queueName: QUEUES.sweep,
      prefix: t.prefix,
    });
    await producer.close();
    expect(tree.job.data).toMatchObject({ runId: body.id, trialCount: 3 });
    // Trials are created lazily (issue 16, request amplification): the run starts with its first trial's
    // jobs; agents create the others as trials start (apps/worker/src/materialize.ts). Was: 3 children.
    expect(tree.children).toHaveLength(1);
    const run = (await get(`/runs/${body.id}`)).json();
    expect(run).toMatchObject({ trialCount: 3, notCreated: 2 });
    for (const child of tree.children!) {
      expect(child.job.queueName).toBe(evalQueue('cpu'));
      const train = child.children![0]!.job;
      expect(train.queueName).toBe(trainQueue('cpu'));
      const data = await trainJobOf(t.app, train.data);
      expect(data.slots).toEqual({ device: 'cpu', count: 2 });
      expect(data.runId).toBe(body.id);
      expect(run.trials.map((x: { id: string }) => x.id)).toContain(data.trialId);
    }
    // Published: the trial is QUEUED, the outbox is empty.
    expect(run.trials.map((x: { status: string }) => x.status)).toEqual(['QUEUED']);
    expect(await db.outbox.pendingCount({ runId: body.id })).toBe(0);
    // The others, created as the agents do, are the rest of the plan in order.
    await createAllTrials(db, body.id);
    const all = (await get(`/runs/${body.id}`)).json();
    expect(all.notCreated).toBe(0);
    expect(all.trials.map((x: { hyperparameters: { beta: number } }) => x.hyperparameters.beta)).toEqual([
      0.5, 1, 1.5,
    ]);
  });

  it('a trial spanning hosts: resources.ranks / ranksPerHost reach the train jobs; a bad split is a 400', async () => {
    const res = await post(spec({ resources: { ranks: 4, ranksPerHost: 2, device: 'cpu' } }));
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    const producer = new FlowProducer({ connection: redis, prefix: t.prefix });
    const tree = await producer.getFlow({ id: jobIds.run(id), queueName: QUEUES.sweep, prefix: t.prefix });
    await producer.close();
    const train = tree.children![0]!.children![0]!.job;
    expect(parseTrialJobRef(train.data).slots).toEqual({ device: 'cpu', count: 4, ranksPerHost: 2 });
    expect((await trainJobOf(t.app, train.data)).slots).toEqual({ device: 'cpu', count: 4, ranksPerHost: 2 });
    const bad = await post(spec({ resources: { ranks: 4, ranksPerHost: 3, device: 'cpu' } }));
    expect(bad.statusCode).toBe(400);
    expect(bad.json().problems).toEqual([
      { path: 'resources.ranksPerHost', reason: 'must divide resources.ranks (4), got 3' },
    ]);
  });

  it('answers 400 listing every problem, and writes nothing', async () => {
    const name = `invalid-${randomUUID()}`;
    const res = await post(
      spec({
        name,
        model: '../../../etc',
        data: ['mpo.json', '/etc/passwd'],
        method: 'mpo',
        hyperparameters: { beta: 'high' },
        targetLanguages: ['zh', 'en'],
        search: {
          strategy: 'random',
          space: { beta: { type: 'loguniform', min: -1, max: 1 } },
          metric: 'rg',
          mode: 'max',
        },
        resources: { ranksPerTrial: 3, device: 'cpu' },
      }),
    );
    expect(res.statusCode).toBe(400);
    // RFC 9457: a problem document, with every problem as the `problems` extension member.
    expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(res.json()).toMatchObject({
      type: 'urn:mpo:problem:invalid-input',
      title: 'Invalid input',
      status: 400,
      detail: expect.stringMatching(/run spec/),
    });
    const paths = res
      .json()
      .problems.map((p: { path: string }) => p.path)
      .sort();
    expect(paths).toEqual(
      [
        'model',
        'data[1]',
        'hyperparameters.beta',
        'targetLanguages[1]',
        'search.space.beta.min',
        'search.maxTrials',
        'training.batchSize',
      ].sort(),
    );
    for (const p of res.json().problems) expect(p.reason).toEqual(expect.any(String));
    expect(
      (await db.runs.list({ ownerTokenId: undefined, limit: 200 })).items.some((r) => r.name === name),
    ).toBe(false);
  });

  it('accepts a run spec in YAML, and names the line of each problem', async () => {
    const post = (body: string, url = '/runs') =>
      t.app.inject({
        method: 'POST',
        url,
        headers: { ...t.admin, 'content-type': 'application/yaml' },
        payload: body,
      });
    const ok = await post(YAML.stringify(spec()));
    expect(ok.statusCode).toBe(201);
    expect(ok.json().warnings).toBeUndefined();
    const bad = await post(YAML.stringify(spec({ training: { steps: 0 } })));
    expect(bad.statusCode).toBe(400);
    const steps = bad.json().problems.find((p: { path: string }) => p.path === 'training.steps');
    const line =
      YAML.stringify(spec())
        .split('\n')
        .findIndex((l) => l.startsWith('training:')) + 2;
    expect(steps).toMatchObject({ line, column: expect.any(Number) });
    const broken = await post('name: x\nmodel: [a,\n');
    expect(broken.statusCode).toBe(400);
    expect(broken.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(broken.json().problems[0]).toMatchObject({
      line: expect.any(Number),
      reason: expect.stringMatching(/invalid YAML/),
    });
  });

  it('accepts the official MPO LLaMA-Factory YAML as it is: one MPO trial, ignored fields as warnings', async () => {
    // examples/train_mpo/llama3.1_mpo.yaml of github.com/circle-hit/MPO, with the model under our model root.
    const official = `model_name_or_path: llama-1b
stage: dpo
do_train: true
do_eval: false
finetuning_type: full
deepspeed: examples/deepspeed/ds_z2_config.json
pref_beta: 1.0
pref_loss: sigmoid
dataset: llama_mpo_data
template: llama3.1
cutoff_len: 1024
max_samples: 100000
overwrite_cache: true
preprocessing_num_workers: 16
output_dir: saves/llama3.1-8b/your_path
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
learning_rate: 6.0e-07
num_train_epochs: 2
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
save_only_model: true
save_strategy: 'no'
`;
    const post = (body: string, query = '') =>
      t.app.inject({
        method: 'POST',
        url: `/runs${query}`,
        headers: { ...t.admin, 'content-type': 'text/yaml' },
        payload: body,
      });
    const res = await post(official, '?targetLanguages=zh,sw&name=lf-official');
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ name: 'lf-official', trialCount: 1 });
    expect(res.json().warnings).toEqual(
      expect.arrayContaining([expect.stringMatching(/^deepspeed: /), expect.stringMatching(/^bf16: /)]),
    );
    const run = await db.runs.get(res.json().id);
    expect(run.spec).toMatchObject({
      method: 'mpo',
      hyperparameters: { beta: 1 },
      targetLanguages: ['zh', 'sw'],
      dominantLanguage: 'en',
      training: {
        learningRate: 6e-7,
        epochs: 2,
        batchSize: 1,
        microBatch: 1,
        cutoff: 1024,
        warmupRatio: 0.1,
      },
    });
    // What we cannot honour is a 400 naming the field and its line.
    const lora = await post(official.replace('finetuning_type: full', 'finetuning_type: lora'));
    expect(lora.statusCode).toBe(400);
    expect(lora.json().problems).toEqual([
      {
        path: 'finetuning_type',
        reason: expect.stringMatching(/only full fine-tuning/),
        line: 5,
        column: 18,
      },
    ]);
  });

  it('rejects bodies over 1 MiB (413), non-objects and broken JSON (400)', async () => {
    const big = await t.app.inject({
      method: 'POST',
      url: '/runs',
      headers: { ...t.admin, 'content-type': 'application/json' },
      payload: JSON.stringify({ ...spec(), pad: 'x'.repeat(1024 * 1024) }),
    });
    expect(big.statusCode).toBe(413);
    expect(big.headers['content-type']).toMatch(/^application\/problem\+json/);
    // about:blank: the title is the status phrase (RFC 9457 §4.2.1; RFC 9110 §15.5.14 names 413).
    expect(big.json()).toMatchObject({ type: 'about:blank', status: 413, title: 'Content Too Large' });
    expect(big.json().detail).toEqual(expect.any(String));
    const text = await t.app.inject({
      method: 'POST',
      url: '/runs',
      headers: { ...t.admin, 'content-type': 'text/plain' },
      payload: 'hello',
    });
    // Fastify parses text/plain to a string; the spec validator rejects it like any non-object.
    expect(text.statusCode).toBe(400);
    expect(text.json().problems[0].reason).toMatch(/object/);
    const broken = await t.app.inject({
      method: 'POST',
      url: '/runs',
      headers: { ...t.admin, 'content-type': 'application/json' },
      payload: '{"name":',
    });
    expect(broken.statusCode).toBe(400);
  });

  it('confines model and data paths to their roots (traversal → 400)', async () => {
    for (const [field, value] of [
      ['model', '../llama-1b'],
      ['model', '/etc'],
      ['data', '../../mpo.json'],
      ['data', { path: '..%2f../x' }],
    ] as const) {
      const res = await post(spec({ [field]: value }));
      expect(res.statusCode, `${field}=${JSON.stringify(value)}`).toBe(400);
      expect(res.json().problems[0].path).toMatch(new RegExp(`^${field}`));
    }
  });

  it('returns the same run for the same Idempotency-Key, 422 when the spec differs', async () => {
    const key = randomUUID();
    const s = spec();
    const first = await post(s, { 'idempotency-key': key });
    const second = await post(s, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(200);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.json()).toEqual(first.json());
    const concurrent = await Promise.all(
      [1, 2, 3].map(() => post(spec({ name: 'race' }), { 'idempotency-key': `${key}-race` })),
    );
    expect(new Set(concurrent.map((r) => r.json().id)).size).toBe(1);
    expect(concurrent.map((r) => r.statusCode).sort()).toEqual([200, 200, 201]);
    const different = await post({ ...s, name: 'another' }, { 'idempotency-key': key });
    expect(different.statusCode).toBe(422);
  });
});

describe('GET /runs and /runs/:id', () => {
  it('lists newest first with pagination and a status filter', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await post(spec())).json().id);
    const page = (await get('/runs?limit=2&offset=0')).json();
    expect(page.items).toHaveLength(2);
    expect(page.items[0].id).toBe(ids[2]);
    expect(page.items[1].id).toBe(ids[1]);
    expect(page.total).toBeGreaterThanOrEqual(3);
    const next = (await get('/runs?limit=2&offset=2')).json();
    expect(next.items[0].id).toBe(ids[0]);
    await t.app.inject({ method: 'POST', url: `/runs/${ids[0]}/cancel`, headers: t.admin });
    const cancelled = (await get('/runs?status=CANCELLED&limit=200')).json();
    expect(cancelled.items.map((r: { id: string }) => r.id)).toContain(ids[0]);
    expect(cancelled.items.every((r: { status: string }) => r.status === 'CANCELLED')).toBe(true);
    expect((await get('/runs?status=BOGUS')).statusCode).toBe(400);
    expect((await get('/runs?limit=0')).json().problems[0].path).toBe('querystring.limit');
  });

  it('shows trials with status, hyperparameters, step and the best metric', async () => {
    const id = (await post(spec())).json().id;
    await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
    const run0 = await db.runs.get(id);
    await db.runs.updateTrial(run0.trials[0]!.id, { status: 'SUCCEEDED', currentStep: 20, bestMetric: 0.3 });
    await db.runs.updateTrial(run0.trials[1]!.id, { status: 'RUNNING', currentStep: 7, bestMetric: 0.6 });
    const run = (await get(`/runs/${id}`)).json();
    expect(run.best).toEqual({ trialId: run0.trials[1]!.id, trialIndex: 1, value: 0.6 });
    expect(run.objective).toEqual({ metric: 'heldout/reward_gap', mode: 'max' });
    expect(run.trials[1]).toMatchObject({
      status: 'RUNNING',
      currentStep: 7,
      totalSteps: 20,
      hyperparameters: { beta: 1 },
    });
    expect(run.spec.model).toEqual({ kind: 'path', path: 'llama-1b' });
  });

  it("returns the ASHA rungs of the run's asha config, the ones its train jobs were given", async () => {
    const asha = (a: Record<string, number>) =>
      spec({
        search: {
          strategy: 'asha',
          space: { beta: { type: 'uniform', min: 0.5, max: 2 } },
          maxTrials: 2,
          metric: 'heldout/reward_gap',
          mode: 'max',
          asha: a,
        },
        training: { batchSize: 8, microBatchSize: 2 },
      });
    for (const [config, rungs] of [
      [{ minSteps: 5, maxSteps: 200, reductionFactor: 3 }, [5, 15, 45, 135]],
      [{ minSteps: 2, maxSteps: 17, reductionFactor: 2 }, [2, 4, 8, 16]],
      [{ minSteps: 4, maxSteps: 16 }, [4, 12]], // η defaults to 3
    ] as const) {
      const created = await post(asha(config));
      expect(created.statusCode, JSON.stringify(config)).toBe(201);
      const run = (await get(`/runs/${created.json().id}`)).json();
      expect(run.rungs, JSON.stringify(config)).toEqual(rungs);
      const producer = new FlowProducer({ connection: redis, prefix: t.prefix });
      const tree = await producer.getFlow({
        id: jobIds.run(run.id),
        queueName: QUEUES.sweep,
        prefix: t.prefix,
      });
      await producer.close();
      for (const child of tree.children!) {
        const data = await trainJobOf(t.app, child.children![0]!.job.data);
        expect(data.asha?.rungs).toEqual(rungs);
      }
    }
    // Not ASHA: no rungs.
    expect((await get(`/runs/${(await post(spec())).json().id}`)).json().rungs).toEqual([]);
  });

  it('answers 404 for unknown and malformed ids', async () => {
    for (const url of [`/runs/${randomUUID()}`, '/runs/not-a-uuid', `/runs/${randomUUID()}/metrics`]) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(404);
      expect(res.headers['content-type'], url).toMatch(/^application\/problem\+json/);
      expect(res.json(), url).toMatchObject({ type: 'about:blank', title: 'Not Found', status: 404 });
    }
    expect(
      (await t.app.inject({ method: 'POST', url: `/runs/${randomUUID()}/cancel`, headers: t.admin }))
        .statusCode,
    ).toBe(404);
    const noRoute = await get('/nope');
    expect(noRoute.statusCode).toBe(404);
    expect(noRoute.json()).toMatchObject({ status: 404, detail: 'no route GET /nope' });
  });
});

describe('GET /runs/:id/evaluations', () => {
  it("returns every trial's evaluation rows with the trial index, filtered by benchmark", async () => {
    const id = (await post(spec())).json().id;
    await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
    const run = await db.runs.get(id);
    const [a, b] = [run.trials[0]!.id, run.trials[2]!.id];
    await db.artifacts.recordEvaluations([
      { trialId: a, benchmark: 'multijail', language: 'zh', metric: 'asr', value: 0.4, n: 20 },
      { trialId: b, benchmark: 'multijail', language: 'avg', metric: 'asr', value: 0.25, n: 120 },
      { trialId: b, benchmark: 'reward-gap', language: 'sw', metric: 'rg', value: 0.05, n: 9 },
    ]);
    const all = (await get(`/runs/${id}/evaluations`)).json();
    expect(all.evaluations).toHaveLength(3);
    expect(all.evaluations.find((e: { language: string }) => e.language === 'zh')).toMatchObject({
      trialId: a,
      trialIndex: 0,
      value: 0.4,
      n: 20,
    });
    const rg = (await get(`/runs/${id}/evaluations?benchmark=reward-gap`)).json();
    expect(rg.evaluations).toEqual([
      expect.objectContaining({ trialIndex: 2, language: 'sw', metric: 'rg', value: 0.05 }),
    ]);
    expect((await get(`/runs/${randomUUID()}/evaluations`)).statusCode).toBe(404);
  });
});

describe('POST /runs/:id/cancel', () => {
  it('cancels trials not started, flags running ones, sets the Redis key, and is idempotent', async () => {
    const id = (await post(spec())).json().id;
    await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
    const run = await db.runs.get(id);
    await db.runs.updateTrial(run.trials[0]!.id, { status: 'RUNNING' });
    const res = await t.app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: t.admin });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ id, status: 'PENDING', cancelled: 2, stopping: 1 });
    expect(await redis.exists(redisKeys(t.prefix).cancel(id))).toBe(1);
    const after = (await get(`/runs/${id}`)).json();
    expect(after.trials.map((x: { status: string }) => x.status)).toEqual([
      'RUNNING',
      'CANCELLED',
      'CANCELLED',
    ]);
    expect(after.cancelRequestedAt).toBe(res.json().cancelRequestedAt);
    const again = await t.app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: t.admin });
    expect(again.statusCode).toBe(202);
    expect(again.json().cancelRequestedAt).toBe(res.json().cancelRequestedAt);
  });

  it('answers 409 for a run that already finished', async () => {
    const id = (await post(spec())).json().id;
    await db.runs.setStatus(id, 'SUCCEEDED');
    const res = await t.app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: t.admin });
    expect(res.statusCode).toBe(409);
  });
});

describe('GET /runs/:id/metrics', () => {
  let id: string;
  let trialIds: string[];
  const stored = new Map<string, { step: number; value: number }[]>();

  beforeAll(async () => {
    id = (await post(spec())).json().id;
    await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
    trialIds = (await db.runs.get(id)).trials.map((x) => x.id);
    const rows = [];
    for (let s = 1; s <= 3000; s++) rows.push({ trialId: trialIds[0]!, step: s, name: 'loss', value: 1 / s });
    for (let s = 5; s <= 2000; s += 5) {
      rows.push({ trialId: trialIds[1]!, step: s, name: 'rg', language: 'zh', value: s / 1000 });
      rows.push({ trialId: trialIds[1]!, step: s, name: 'rg', language: 'ko', value: -s / 1000 });
    }
    await db.metrics.append(rows);
    for (const [trialId, name, language] of [
      [trialIds[0]!, 'loss', null],
      [trialIds[1]!, 'rg', 'zh'],
      [trialIds[1]!, 'rg', 'ko'],
    ] as const) {
      stored.set(`${trialId}/${name}/${language}`, await db.metrics.series(trialId, name, { language }));
    }
  });

  /** The expected answer from every stored row (see packages/db/src/series.ts for the rule). */
  const reference = (pts: { step: number; value: number }[], n: number, since = -1) => {
    const count = (xs: { step: number }[], t: number) => new Set(xs.map((p) => Math.floor(p.step / t))).size;
    const rows = pts.filter((p) => p.step > since);
    const lo = Math.max(pts[0]!.step, since + 1);
    const hi = pts.at(-1)!.step;
    if (hi - lo + 1 <= n)
      return { stride: 1, steps: rows.map((p) => p.step), values: rows.map((p) => p.value) };
    let t = 1;
    while (count(pts, t) > SKETCH_CAP) t *= 2;
    while (count(rows, t) > n) t *= 2;
    const last = new Map<number, { step: number; value: number }>();
    for (const p of rows) last.set(Math.floor(p.step / t), p);
    return {
      stride: t,
      steps: [...last.values()].map((p) => p.step),
      values: [...last.values()].map((p) => p.value),
    };
  };

  it('cuts every series server-side to match the JS reference (last row per bucket)', async () => {
    for (const points of [1, 10, 500]) {
      const res = (await get(`/runs/${id}/metrics?points=${points}`)).json();
      expect(res).toMatchObject({ runId: id, points, aggregation: 'last' });
      expect(res.series).toHaveLength(3);
      for (const s of res.series) {
        const pts = stored.get(`${s.trialId}/${s.name}/${s.language}`)!;
        expect({ stride: s.stride, steps: s.steps, values: s.values }).toEqual(reference(pts, points));
        expect(s.count).toBe(pts.length);
      }
    }
  });

  it('filters by trial (id or index), name, lang and since', async () => {
    const byIndex = (await get(`/runs/${id}/metrics?trial=1&lang=zh&points=50&since=1000`)).json();
    expect(
      byIndex.series.map((s: { trialIndex: number; name: string; language: string }) => [
        s.trialIndex,
        s.name,
        s.language,
      ]),
    ).toEqual([[1, 'rg', 'zh']]);
    expect(byIndex.series[0]).toMatchObject(reference(stored.get(`${trialIds[1]}/rg/zh`)!, 50, 1000));
    const byId = (await get(`/runs/${id}/metrics?trial=${trialIds[0]}&name=loss&points=3`)).json();
    expect(byId.series[0]).toMatchObject({ stride: 1024, steps: [1023, 2047, 3000] });
    expect((await get(`/runs/${id}/metrics?trial=7`)).statusCode).toBe(404);
    expect((await get(`/runs/${id}/metrics?trial=${randomUUID()}`)).statusCode).toBe(404);
    expect((await get(`/runs/${id}/metrics?points=${SKETCH_CAP + 1}`)).statusCode).toBe(400);
  });

  it('pages every stored row of a series through /metrics/rows (for exports)', async () => {
    const pages: { step: number; value: number }[][] = [];
    for (let since: number | null = -1; since !== null; ) {
      const res = await get(`/runs/${id}/metrics/rows?trial=0&name=loss&since=${since}&limit=1000`);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      pages.push(body.rows);
      since = body.next;
    }
    // 3000 rows in pages of 1000; the fourth page is empty (the third was full, so `next` was set).
    expect(pages.map((p) => p.length)).toEqual([1000, 1000, 1000, 0]);
    const all = pages.flat();
    const loss = stored.get(`${trialIds[0]}/loss/null`)!;
    expect(all.map((r) => [r.step, r.value])).toEqual(loss.map((p) => [p.step, p.value]));
    const zh = (await get(`/runs/${id}/metrics/rows?trial=${trialIds[1]}&name=rg&lang=zh`)).json();
    expect(zh.rows).toHaveLength(400);
    expect(zh.next).toBeNull();
    // Without lang: the series without a language (rg has none).
    expect((await get(`/runs/${id}/metrics/rows?trial=1&name=rg`)).json().rows).toEqual([]);
    expect((await get(`/runs/${id}/metrics/rows?trial=9&name=rg`)).statusCode).toBe(404);
    expect((await get(`/runs/${id}/metrics/rows?trial=0&name=loss&limit=10001`)).statusCode).toBe(400);
  });
});
