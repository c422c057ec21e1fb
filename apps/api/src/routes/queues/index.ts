// GET /queues: per queue, counts by state, throughput, oldest waiting age and
// recent failures; and the worker agents online with their device slots.
// Counts and slots are for everyone; which runs failed and why, and the
// agents' hosts, pids and running jobs only for admins: a user token sees the
// failures of its own runs and anonymous agents.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ALL_QUEUES, readAgents, JOB_STATES as STATES } from '@mpo/queue';
import type { Queue } from 'bullmq';
import { ownerFilter } from '../../plugins/auth.js';
import { queuesSchema } from './schemas.js';

const MINUTES = 15;

async function view(q: Queue) {
  const now = Date.now();
  const [counts, completed, failed, oldest, failures, workers] = await Promise.all([
    q.getJobCounts(...STATES),
    q.getMetrics('completed', 0, MINUTES - 2),
    q.getMetrics('failed', 0, MINUTES - 2),
    q.getJobs(['wait'], 0, 0, true),
    q.getJobs(['failed'], 0, 4, false),
    q.getWorkersCount(),
  ]);
  // BullMQ closes a minute's data point only when a later job finishes; what the
  // current minute has so far is count − prevCount.
  const perMinute = (m: typeof completed) =>
    [Math.max(0, m.meta.count - m.meta.prevCount), ...m.data].slice(0, MINUTES);
  let source: 'metrics' | 'jobs' = 'metrics';
  let completedPerMinute = perMinute(completed);
  const failedPerMinute = perMinute(failed);
  if (completed.meta.count === 0 && (counts.completed ?? 0) > 0) {
    // Workers without `metrics` enabled: count retained completed jobs by minute instead.
    source = 'jobs';
    completedPerMinute = new Array(MINUTES).fill(0);
    for (const job of await q.getJobs(['completed'], 0, 999, false)) {
      const ago = Math.floor((now - (job.finishedOn ?? 0)) / 60_000);
      if (ago >= 0 && ago < MINUTES) completedPerMinute[ago] = (completedPerMinute[ago] ?? 0) + 1;
    }
  }
  const recent = completedPerMinute.slice(0, 5);
  const oldestJob = oldest[0];
  return {
    name: q.name,
    counts,
    throughput: {
      source,
      completedPerMinute,
      failedPerMinute,
      perMinute: recent.reduce((a, b) => a + b, 0) / 5,
    },
    oldestWaitingAgeMs: oldestJob ? Math.max(0, now - oldestJob.timestamp) : null,
    recentFailures: failures.filter(Boolean).map((j) => ({
      jobId: String(j.id),
      name: j.name,
      runId: (j.data as { runId?: string })?.runId ?? null,
      trialId: (j.data as { trialId?: string })?.trialId ?? null,
      reason: j.failedReason ?? '',
      attemptsMade: j.attemptsMade,
      failedAt: j.finishedOn ?? null,
    })),
    workers,
  };
}

type QueueView = Awaited<ReturnType<typeof view>>;
type Agent = Awaited<ReturnType<typeof readAgents>>[number];

/** What a non-admin may see of an agent: its queues and slots, not where it runs or what. */
const anonymousAgent = (a: Agent, i: number): Agent => ({
  ...a,
  id: `agent-${i + 1}`,
  host: '',
  pid: 0,
  running: [],
});

const queuesRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/queues', { schema: queuesSchema }, async (req) => {
    const { byName, redis, prefix } = app.queues;
    const [queues, agents] = await Promise.all([
      Promise.all(ALL_QUEUES.map((name) => view(byName.get(name)!))),
      readAgents(redis, prefix),
    ]);
    const owner = ownerFilter(req);
    if (owner === undefined) {
      const [pending, dead] = await Promise.all([
        app.db.outbox.pendingCount({ prefix }),
        app.db.outbox.deadLetters({ prefix }),
      ]);
      const deadLetters = dead.map((d) => ({
        ...d,
        id: String(d.id),
        createdAt: d.createdAt.toISOString(),
        deadAt: d.deadAt.toISOString(),
      }));
      return { prefix, queues, agents, outbox: { pending, deadLetters } };
    }
    const runIds = queues.flatMap((q) => q.recentFailures.map((f) => f.runId ?? ''));
    const own = await app.db.runs.ownedBy(runIds, owner);
    const mine = (q: QueueView): QueueView => ({
      ...q,
      recentFailures: q.recentFailures.filter((f) => f.runId !== null && own.has(f.runId.toLowerCase())),
    });
    return { prefix, queues: queues.map(mine), agents: agents.map(anonymousAgent) };
  });
};

export default queuesRoutes;
