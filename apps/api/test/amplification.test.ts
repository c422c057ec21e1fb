// Request amplification (issue 16, item 1): what one POST /runs makes the platform store, against the
// request's bytes, measured in the real stores: Redis (MEMORY USAGE of every key the run added: its jobs,
// BullMQ's per-job keys, queue lists and event streams) and Postgres (pg_column_size of the Run, Trial and
// Outbox rows). "Before" is the previous layout (every train and eval job carrying the run-level fields,
// the outbox row carrying the spec and every trial's plan), re-created here on the same stores for the
// same request. Printed by the test; figures in docs/reliability.md.
import { randomUUID } from 'node:crypto';
import { createDb, type Db, type Json, OUTBOX_KINDS } from '@mpo/db';
import {
  buildRunFlow,
  evalJobData,
  JOB_TREE_BUDGET,
  type PlannedTrial,
  parseRunSpec,
  type RunSpec,
  trainJobData,
} from '@mpo/queue';
import { type FlowJob, FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, deleteKeys, REDIS_URL, roots, spec, testApp } from './helpers.js';

let db: Db;
let redis: Redis;
const created: string[] = [];
beforeAll(async () => {
  db = createDb(DATABASE_URL);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  for (const id of created) await db.runs.delete(id).catch(() => {});
  await db.close();
  redis.disconnect();
});

/** MEMORY USAGE (every element counted: SAMPLES 0) of each key under `prefix`, rate-limit counters aside. */
async function redisBytes(prefix: string): Promise<number> {
  let bytes = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    for (const k of keys) {
      if (k.includes(':ratelimit:')) continue;
      bytes += Number(await redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) || 0;
    }
    cursor = next;
  } while (cursor !== '0');
  return bytes;
}

async function postgresBytes(runId: string): Promise<number> {
  const b = await db.runs.storedBytes(runId);
  return b.run + b.trials + b.outbox;
}

/** What POST /runs stores for `body` now, on an app of its own (its own prefix: its own queues and streams). */
async function storedNow(body: Record<string, unknown>) {
  const app = await testApp('amplification');
  try {
    const redisBefore = await redisBytes(app.prefix); // the queues' meta keys, written at start-up
    const res = await app.app.inject({
      method: 'POST',
      url: '/runs',
      headers: { ...app.admin, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().queued).toBe(true);
    const id = res.json().id as string;
    created.push(id);
    return {
      redis: (await redisBytes(app.prefix)) - redisBefore,
      postgres: await postgresBytes(id),
      trials: res.json().trialCount as number,
    };
  } finally {
    await app.cleanup();
  }
}

/** The tree with every train and eval job carrying its full payload, as the previous layout published it. */
function fullTree(tree: FlowJob, runId: string, spec: RunSpec, planned: PlannedTrial[]): FlowJob {
  return {
    ...tree,
    children: tree.children!.map((ev, i) => ({
      ...ev,
      data: evalJobData(runId, spec, planned[i]!),
      children: ev.children!.map((tr) => ({ ...tr, data: trainJobData(runId, spec, planned[i]!) })),
    })),
  };
}

/** What the previous layout stored for `body`: the same rows, the plan in the outbox, full payloads in Redis. */
async function storedBefore(body: Record<string, unknown>) {
  const prefix = `mpo-api-test-amplification-before-${randomUUID().slice(0, 8)}`;
  const { spec: s, trials } = parseRunSpec(body, { ...roots(), mustExist: false });
  let planned: PlannedTrial[] = [];
  const { run } = await db.runs.create({
    name: s.name,
    spec: s as unknown as Json,
    trials: trials.map((x) => ({
      hyperparameters: { ...x.hyperparameters, ...x.params } as Json,
      ...(x.totalSteps !== null ? { totalSteps: x.totalSteps } : {}),
    })),
    outbox: (runId, trialIds) => {
      planned = trialIds.map((trialId, i) => ({ trialId, plan: trials[i]! }));
      return [
        { kind: OUTBOX_KINDS.flow, payload: { prefix, runId, spec: s, trials: planned } as unknown as Json },
      ];
    },
  });
  created.push(run.id);
  const producer = new FlowProducer({ connection: redis, prefix });
  await producer.add(fullTree(buildRunFlow(run.id, s, planned), run.id, s, planned));
  await producer.close();
  const bytes = { redis: await redisBytes(prefix), postgres: await postgresBytes(run.id) };
  await deleteKeys(prefix);
  return bytes;
}

const seeds = (n: number) => Array.from({ length: n }, (_, i) => i);
const objective = { metric: 'heldout/reward_gap', mode: 'max' };
/** A language tag of `length` characters (8-letter subtags), distinct per `i`. */
function tag(i: number, length: number): string {
  let s = `zz-n${String(i).padStart(3, '0')}`;
  while (s.length + 9 <= length) s += '-abcdefgh';
  return s;
}
const longTags = (n: number) => Array.from({ length: n }, (_, i) => tag(i, 35));

const grid = (space: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
  strategy: 'grid',
  space,
  ...objective,
  ...over,
});
const seedGrid = (n: number) => grid({ 'training.seed': seeds(n) }, n > 100 ? { maxTrials: n } : {});

const CASES: Record<string, Record<string, unknown>> = {
  '(a) a typical small sweep: 3 beta x 2 seeds': spec({
    search: grid({ beta: [0.5, 1, 1.5], 'training.seed': [1, 2] }),
  }),
  '(b) the issue shape, largest accepted before: 32 tags of 35 characters, 12 seeds': spec({
    targetLanguages: longTags(32),
    search: seedGrid(12),
  }),
  'the same with 2 tags (12 seeds)': spec({ search: seedGrid(12) }),
  '(b) the issue shape at the trial cap, accepted now: 32 tags of 35 characters, 1,000 seeds': spec({
    targetLanguages: longTags(32),
    search: seedGrid(1000),
  }),
  '(c) a 1,000-seed grid with maxTrials': spec({ search: seedGrid(1000) }),
  '(d) random search, maxTrials 1,000 (no request bytes per trial)': spec({
    search: {
      strategy: 'random',
      space: { beta: { type: 'uniform', min: 0.1, max: 1 } },
      maxTrials: 1000,
      ...objective,
    },
  }),
};

interface Measured {
  requestBytes: number;
  trials: number;
  before: number;
  after: number;
}
const measured: Record<string, Measured> = {};

describe('request amplification (stored bytes / request bytes)', () => {
  it.each(Object.keys(CASES))('%s', async (name) => {
    const body = CASES[name]!;
    const requestBytes = Buffer.byteLength(JSON.stringify(body));
    const before = await storedBefore(body);
    const now = await storedNow(body);
    const total = (b: { redis: number; postgres: number }) => b.redis + b.postgres;
    const m = { requestBytes, trials: now.trials, before: total(before), after: total(now) };
    measured[name] = m;
    const line = (what: string, b: { redis: number; postgres: number }) =>
      `${what} ${(total(b) / requestBytes).toFixed(1)}x (Redis ${b.redis} B + Postgres ${b.postgres} B, ` +
      `${Math.round(total(b) / now.trials)} B a trial)`;
    console.log(
      `${name}: request ${requestBytes} B, ${now.trials} trials; ${line('before', before)}; ${line('after', now)}`,
    );
    expect(m.after).toBeLessThan(m.before);
    // Every trial costs its Trial row and two BullMQ jobs (a job hash of about 1.3 KB whatever its payload,
    // a dependency set, event-stream entries): about 4 KB, however few request bytes the trial took; a run
    // adds its sweep job and the queues' first stream and list nodes (about 16 KB).
    expect(m.after).toBeLessThan(JOB_TREE_BUDGET.requestFactor * requestBytes + 4500 * m.trials + 16_384);
  });

  it('stores the run-level fields once: each byte they add to a request adds at most 20 bytes stored', () => {
    // Two requests with the same trials that differ only in the run-level lists (30 more language tags):
    // the extra stored bytes over the extra request bytes. Before, every trial's jobs repeated the lists.
    const pairs: Array<[string, string]> = [
      [
        '(b) the issue shape, largest accepted before: 32 tags of 35 characters, 12 seeds',
        'the same with 2 tags (12 seeds)',
      ],
      [
        '(b) the issue shape at the trial cap, accepted now: 32 tags of 35 characters, 1,000 seeds',
        '(c) a 1,000-seed grid with maxTrials',
      ],
    ];
    for (const [long, short] of pairs) {
      const l = measured[long]!;
      const s = measured[short]!;
      expect(l.trials).toBe(s.trials);
      const extra = l.requestBytes - s.requestBytes;
      const marginal = (k: 'before' | 'after') => (l[k] - s[k]) / extra;
      console.log(
        `${l.trials} trials, +${extra} B of language tags: stored +${l.before - s.before} B before ` +
          `(${marginal('before').toFixed(1)}x), +${l.after - s.after} B after (${marginal('after').toFixed(1)}x)`,
      );
      expect(marginal('after')).toBeLessThanOrEqual(JOB_TREE_BUDGET.requestFactor);
      expect(marginal('before')).toBeGreaterThan(JOB_TREE_BUDGET.requestFactor);
    }
  });
});
