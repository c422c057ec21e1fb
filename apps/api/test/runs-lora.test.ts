// POST /runs with training.lora: stored with the run and carried into every train job; bad fields
// answer 400 naming them.
import { jobIds, QUEUES } from '@mpo/queue';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, spec, testApp, trainJobOf } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let redis: Redis;
beforeAll(async () => {
  t = await testApp('runs-lora');
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await t.cleanup();
  redis.disconnect();
});
const post = (body: unknown) =>
  t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: body as object });

describe('POST /runs with training.lora', () => {
  it('stores lora with the run and passes it to every train job', async () => {
    const lora = { rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] };
    const res = await post(spec({ training: { steps: 20, batchSize: 8, microBatch: 2, lora } }));
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id;
    const run = (await t.app.inject({ method: 'GET', url: `/runs/${id}`, headers: t.admin })).json();
    expect(run.spec.training.lora).toEqual(lora);
    const producer = new FlowProducer({ connection: redis, prefix: t.prefix });
    const tree = await producer.getFlow({ id: jobIds.run(id), queueName: QUEUES.sweep, prefix: t.prefix });
    await producer.close();
    for (const child of tree.children!) {
      expect((await trainJobOf(t.app, child.children![0]!.job.data)).training.lora).toEqual(lora);
    }
  });

  it('answers 400 naming each bad lora field', async () => {
    const res = await post(
      spec({
        training: { steps: 20, batchSize: 8, microBatch: 2, lora: { rank: 0, targetModules: ['qkv'] } },
      }),
    );
    expect(res.statusCode).toBe(400);
    const paths = res.json().problems.map((p: { path: string }) => p.path);
    expect(paths).toEqual(expect.arrayContaining(['training.lora.rank', 'training.lora.targetModules[0]']));
  });
});
