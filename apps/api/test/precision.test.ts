// POST /runs with training.dtype and training.activationCheckpointing (issue 14): the train jobs carry
// them to the worker; fp16 on the CPU is a 400 naming the field, with nothing written.
import { jobIds, QUEUES } from '@mpo/queue';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, spec, testApp, trainJobOf } from './helpers.js';

let t: Awaited<ReturnType<typeof testApp>>;
let redis: Redis;
beforeAll(async () => {
  t = await testApp('precision');
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await t.cleanup();
  redis.disconnect();
});

const post = (body: unknown) =>
  t.app.inject({ method: 'POST', url: '/runs', headers: t.admin, payload: body as object });
const training = (extra: Record<string, unknown>) => ({
  maxSteps: 20,
  batchSize: 8,
  microBatchSize: 2,
  ...extra,
});

describe('POST /runs precision fields', () => {
  it('bf16 with activation checkpointing reaches every train job', async () => {
    const res = await post(spec({ training: training({ dtype: 'bf16', activationCheckpointing: true }) }));
    expect(res.statusCode, res.body).toBe(201);
    const producer = new FlowProducer({ connection: redis, prefix: t.prefix });
    const tree = await producer.getFlow({
      id: jobIds.run(res.json().id),
      queueName: QUEUES.sweep,
      prefix: t.prefix,
    });
    await producer.close();
    expect(tree.children!.length).toBeGreaterThan(0);
    for (const child of tree.children!) {
      const data = await trainJobOf(t.app, child.children![0]!.job.data);
      expect(data.training).toMatchObject({ dtype: 'bf16', activationCheckpointing: true });
    }
  });

  it('fp16 on the CPU and unknown dtypes are 400s that name training.dtype', async () => {
    for (const dtype of ['fp16', 'int8']) {
      const res = await post(spec({ training: training({ dtype }) }));
      expect(res.statusCode).toBe(400);
      const paths = res.json().problems.map((p: { path: string }) => p.path);
      expect(paths).toContain('training.dtype');
    }
  });
});
