// Redis and BullMQ: one command connection shared by the queues (for /queues
// and /metrics), the flow producer (outbox publisher) and our own keys. It
// fails fast while Redis is away (PRODUCER_REDIS_OPTIONS) so requests get a
// 503 instead of hanging, and reconnects in the background. Start-up refuses a
// Redis whose maxmemory-policy is not noeviction.

import { ALL_QUEUES, assertNoEviction, PRODUCER_REDIS_OPTIONS, type QueueName, redactUrl } from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import { FlowProducer, Queue } from 'bullmq';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';

export interface Queues {
  prefix: string;
  redis: Redis;
  flow: FlowProducer;
  byName: ReadonlyMap<QueueName, Queue>;
}

declare module 'fastify' {
  interface FastifyInstance {
    queues: Queues;
  }
}

export interface QueuesPluginOptions {
  redisUrl: string;
  prefix: string;
}

export default fp<QueuesPluginOptions>(
  async (app, opts) => {
    const log = app.log.child({ component: 'redis' });
    const redis = new Redis(opts.redisUrl, { ...PRODUCER_REDIS_OPTIONS, lazyConnect: true });
    // Without listeners, connection errors would be unhandled 'error' events; log each outage once.
    let down = false;
    redis.on('error', (err) => {
      if (!down) log.warn({ err: err.message }, 'Redis connection error');
      down = true;
    });
    redis.on('ready', () => {
      if (down) log.info('Redis connection back');
      down = false;
    });
    app.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(`Redis unreachable at ${redactUrl(opts.redisUrl)}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    await assertNoEviction(redis, opts.redisUrl);

    const byName = new Map<QueueName, Queue>();
    for (const name of ALL_QUEUES) {
      const q = new Queue(name, { connection: redis, prefix: opts.prefix });
      q.on('error', () => {}); // reported once by the connection listener above
      byName.set(name, q);
    }
    const flow = new FlowProducer({ connection: redis, prefix: opts.prefix });
    flow.on('error', () => {});
    app.decorate('queues', { prefix: opts.prefix, redis, flow, byName });
    // Closed before the connection they share (hooks run in reverse order of registration).
    app.addHook('onClose', async () => {
      await Promise.allSettled([flow.close(), ...[...byName.values()].map((q) => q.close())]);
    });
  },
  { name: 'queues' },
);
