import { evalQueue, trainQueue, WORKER_DEFAULTS, writeHeartbeat } from '@mpo/queue';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, spec, testApp, until } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let redis: Redis;
beforeAll(async () => {
  t = await testApp('queues');
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await t.cleanup();
  redis.disconnect();
});

const get = (url: string) => t.app.inject({ method: 'GET', url, headers: t.admin });

describe('GET /queues', () => {
  it('reports counts, throughput, oldest waiting age, failures and agents with their slots', async () => {
    // Six runs of one trial: 6 train jobs waiting, 6 evals and 6 runs waiting for children. (Was two runs
    // of 3 trials: a run now starts with its first trial's jobs only, agents create the others.)
    const oneTrial = () => spec({ search: { ...spec().search, space: { beta: [0.5] } } });
    for (let i = 0; i < 6; i++) {
      expect(
        (await t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: oneTrial() }))
          .statusCode,
      ).toBe(201);
    }
    await new Promise((r) => setTimeout(r, 50));
    let view = (await get('/queues')).json();
    const byName = (v: typeof view, name: string) => v.queues.find((q: { name: string }) => q.name === name);
    expect(view.queues.map((q: { name: string }) => q.name)).toEqual([
      'sweep',
      'train-cpu',
      'train-gpu',
      'eval-cpu',
      'eval-gpu',
    ]);
    expect(byName(view, 'train-cpu').counts).toMatchObject({ waiting: 6, active: 0, failed: 0 });
    expect(byName(view, 'eval-cpu').counts['waiting-children']).toBe(6);
    expect(byName(view, 'sweep').counts['waiting-children']).toBe(6);
    expect(byName(view, 'train-cpu').oldestWaitingAgeMs).toBeGreaterThanOrEqual(50);
    expect(byName(view, 'train-gpu').oldestWaitingAgeMs).toBeNull();

    // A worker (metrics on, as WORKER_DEFAULTS says) completes four train jobs and fails two.
    let n = 0;
    const worker = new Worker(
      trainQueue('cpu'),
      async () => {
        n += 1;
        if (n % 3 === 0) throw new UnrecoverableError(`diverged at step ${n}`);
        return { status: 'SUCCEEDED', step: 20, checkpoint: null, bestMetric: 0.1 };
      },
      { connection: redis.duplicate(), prefix: t.prefix, ...WORKER_DEFAULTS },
    );
    await writeHeartbeat(redis, t.prefix, {
      id: 'agent-1',
      host: 'cpu-box',
      pid: 123,
      version: '0.1.0',
      startedAt: Date.now() - 1000,
      lastSeen: Date.now(),
      queues: [trainQueue('cpu'), evalQueue('cpu')],
      slots: [{ device: 'cpu', total: 2, free: 1 }],
      running: [],
    });
    const train = new Queue(trainQueue('cpu'), { connection: redis, prefix: t.prefix });
    await until(async () => (await train.getJobCountByTypes('completed', 'failed')) === 6);
    view = (await get('/queues')).json();
    const tc = byName(view, 'train-cpu');
    expect(tc.counts).toMatchObject({ waiting: 0, completed: 4, failed: 2 });
    expect(tc.throughput.source).toBe('metrics');
    expect(tc.throughput.completedPerMinute.reduce((a: number, b: number) => a + b, 0)).toBe(4);
    expect(tc.throughput.failedPerMinute.reduce((a: number, b: number) => a + b, 0)).toBe(2);
    expect(tc.throughput.perMinute).toBeCloseTo(4 / 5);
    expect(tc.workers).toBe(1);
    expect(tc.recentFailures).toHaveLength(2);
    expect(tc.recentFailures[0]).toMatchObject({
      name: 'train',
      reason: expect.stringMatching(/^diverged at step [36]$/),
    });
    expect(tc.recentFailures[0].runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(tc.oldestWaitingAgeMs).toBeNull();
    // Every eval is now waiting: the four whose trial trained, and the two whose trial failed, which BullMQ
    // fails with "child … failed" (deferred failure) when an eval worker fetches them.
    expect(byName(view, 'eval-cpu').counts).toMatchObject({ waiting: 6, 'waiting-children': 0 });
    expect(view.agents).toEqual([
      expect.objectContaining({
        id: 'agent-1',
        host: 'cpu-box',
        slots: [{ device: 'cpu', total: 2, free: 1 }],
      }),
    ]);
    await worker.close();
    await train.close();
  });

  it("shows a user token only its own runs' failures, and agents without hosts, pids or jobs", async () => {
    const user = (
      await t.app.inject({
        method: 'POST',
        url: '/tokens',
        headers: t.admin,
        payload: { name: 'queues user' },
      })
    ).json();
    const asUser = { authorization: `Bearer ${user.token}` };
    const mine = (
      await t.app.inject({ method: 'POST', url: '/runs', headers: asUser, payload: spec() })
    ).json();
    const worker = new Worker(
      trainQueue('cpu'),
      async () => {
        throw new UnrecoverableError('out of memory in the user trial');
      },
      { connection: redis.duplicate(), prefix: t.prefix, ...WORKER_DEFAULTS },
    );
    const train = new Queue(trainQueue('cpu'), { connection: redis, prefix: t.prefix });
    try {
      // The user's run starts with its first trial's job (agents would create the others): one failure.
      await until(async () => (await train.getJobCountByTypes('failed')) === 3);
      const admin = (await get('/queues')).json();
      const adminTc = admin.queues.find((q: { name: string }) => q.name === 'train-cpu');
      const reasons = adminTc.recentFailures.map((f: { reason: string }) => f.reason);
      expect(reasons).toContain('out of memory in the user trial');
      expect(reasons.some((r: string) => r.startsWith('diverged'))).toBe(true);
      expect(admin.agents[0]).toMatchObject({ id: 'agent-1', host: 'cpu-box', pid: 123 });

      const view = (await t.app.inject({ method: 'GET', url: '/queues', headers: asUser })).json();
      const tc = view.queues.find((q: { name: string }) => q.name === 'train-cpu');
      expect(tc.counts.failed).toBe(3); // counts stay global
      expect(tc.recentFailures.length).toBe(1);
      for (const f of tc.recentFailures) {
        expect(f.runId).toBe(mine.id);
        expect(f.reason).toBe('out of memory in the user trial');
      }
      expect(JSON.stringify(view)).not.toContain('diverged');
      expect(view.agents).toEqual([
        expect.objectContaining({
          id: 'agent-1',
          host: '',
          pid: 0,
          running: [],
          slots: [{ device: 'cpu', total: 2, free: 1 }],
        }),
      ]);
    } finally {
      await worker.close();
      await train.close();
    }
  });
});

describe('GET /metrics', () => {
  it('exposes queue depths, HTTP durations, trial counts and outcomes in Prometheus format', async () => {
    await get('/runs');
    const res = await get('/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/plain/);
    expect(res.body).toMatch(/mpo_queue_jobs\{queue="train-cpu",state="completed"\} \d+/);
    expect(res.body).toMatch(
      /mpo_http_request_duration_seconds_count\{method="GET",route="\/runs",status_code="200"\} \d+/,
    );
    expect(res.body).toMatch(/mpo_trials\{status="QUEUED"\} \d+/);
    expect(res.body).toMatch(/# TYPE mpo_trial_outcomes_total counter/);
    expect(res.body).toMatch(/mpo_dependency_up\{dependency="postgres"\} 1/);
    expect(res.body).toMatch(/mpo_outbox_pending 0/);
    expect(res.body).toMatch(/mpo_runs_created_total \d+/);
    for (const gauge of ['mpo_trainer_tokens_per_second', 'mpo_allreduce_bus_bandwidth_bytes_per_second']) {
      expect(res.body).toContain(`# TYPE ${gauge} gauge`);
    }
  });

  it('counts each completed job once in the job-duration histogram, however often it is scraped', async () => {
    // The test above completed four train-cpu jobs (and failed two, which are not run times).
    const count = /mpo_job_duration_seconds_count\{queue="train-cpu"\} (\d+)/;
    const first = (await get('/metrics')).body;
    expect(first).toContain('# TYPE mpo_job_duration_seconds histogram');
    expect(first).toMatch(/mpo_job_duration_seconds_bucket\{le="\+Inf",queue="train-cpu"\} 4/);
    expect(count.exec(first)?.[1]).toBe('4');
    expect(count.exec((await get('/metrics')).body)?.[1]).toBe('4');
    // No quantile-labelled gauge (Prometheus naming: durations are histograms).
    expect(first).not.toMatch(/mpo_job_duration_seconds\{[^}]*quantile=/);
  });
});

describe('GET /docs', () => {
  it('serves OpenAPI with the request and response schemas of every route', async () => {
    const doc = (await get('/docs/json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        '/healthz',
        '/metrics',
        '/queues',
        '/readyz',
        '/runs',
        '/runs/{id}',
        '/runs/{id}/cancel',
        '/runs/{id}/evaluations',
        '/runs/{id}/generations',
        '/runs/{id}/metrics',
        '/runs/{id}/metrics/rows',
        '/schemas/{file}',
        '/session',
        '/tokens',
        '/tokens/{id}',
      ].sort(),
    );
    const post = doc.paths['/runs'].post;
    const body = post.requestBody.content['application/json'].schema;
    // YAML run specs and LLaMA-Factory YAMLs are accepted as they are.
    expect(Object.keys(post.requestBody.content)).toEqual(
      expect.arrayContaining(['application/json', 'application/yaml', 'text/yaml']),
    );
    expect(Object.keys(body.properties)).toEqual(
      expect.arrayContaining([
        'name',
        'model',
        'data',
        'dominantLanguage',
        'targetLanguages',
        'method',
        'hyperparameters',
        'search',
        'resources',
        'eval',
        'training',
      ]),
    );
    expect(body.properties.search.properties.strategy).toBeDefined();
    expect(post.responses['201']).toBeDefined();
    expect(post.responses['400']).toBeDefined();
    expect(doc.paths['/runs/{id}/metrics'].get.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['trial', 'name', 'lang', 'since', 'points', 'id']),
    );
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
    // Errors are declared as RFC 9457 problem documents.
    expect(Object.keys(post.responses['400'].content)).toEqual(['application/problem+json']);
    expect(post.responses['400'].content['application/problem+json'].schema.required).toEqual(
      expect.arrayContaining(['type', 'title', 'status', 'detail']),
    );
    expect((await get('/docs')).statusCode).toBeLessThan(400);
  });

  it('is a valid OpenAPI document for an independent validator', async () => {
    // @seriousme/openapi-schema-validator checks the document against the OpenAPI 3.x JSON Schemas
    // published by the OpenAPI Initiative (not against anything of ours).
    const validator = new Validator();
    const res = await validator.validate((await get('/docs/json')).json());
    expect(res.errors ?? []).toEqual([]);
    expect(res.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });
});
