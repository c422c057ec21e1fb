// Prometheus metrics on GET /metrics (prom-client, one registry per app so
// several apps can live in one process in tests): HTTP durations, queue
// depths, job durations, trials by status, trial outcomes, training tokens/s
// and all-reduce bandwidth of running trials, outbox backlog and failures, and
// whether Redis and Postgres answer. Gauges that need Redis or Postgres are
// read at scrape time and skipped (not failed) when the dependency is away;
// Postgres reads wait a second at most, and the scrape token is checked
// without Postgres (plugins/auth.ts authOffline), so a scrape answers within
// seconds through an outage.
import { ALL_QUEUES, FINISHED_JOB_STATES, JOB_STATES, readAgents, TRIAL_TERMINAL_STATUSES } from '@mpo/queue';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * A dependency's answer within a second, else a rejection: a scrape must come back within Prometheus's
 * scrape timeout (10 s by default) even when Postgres or Redis is silent (a cut connection waits for
 * the connect timeout, 5 s, per query).
 */
function withinASecond<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer within 1 s')), 1_000);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

declare module 'fastify' {
  interface FastifyInstance {
    metricsRegistry: Registry;
    appMetrics: { runsCreated: Counter };
  }
}

/** Request durations by route and status. */
function httpMetrics(app: FastifyInstance, register: Registry): void {
  const http = new Histogram({
    name: 'mpo_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [register],
  });
  app.addHook('onResponse', async (req, reply) => {
    http.observe(
      {
        method: req.method,
        route: req.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
}

/** Counters the routes and the outbox increment; returns the one routes use. */
function appCounters(app: FastifyInstance, register: Registry): Counter {
  const runsCreated = new Counter({
    name: 'mpo_runs_created_total',
    help: 'Runs created through POST /runs (idempotent replays not counted)',
    registers: [register],
  });
  const outboxPublished = new Counter({
    name: 'mpo_outbox_published_total',
    help: 'Outbox rows published to Redis',
    labelNames: ['kind'] as const,
    registers: [register],
  });
  const outboxFailures = new Counter({
    name: 'mpo_outbox_publish_failures_total',
    help: 'Failed attempts to publish an outbox row (retried)',
    labelNames: ['kind'] as const,
    registers: [register],
  });
  app.outbox.onPublished = (row) => outboxPublished.inc({ kind: row.kind });
  app.outbox.onFailed = (row) => outboxFailures.inc({ kind: row.kind });
  return runsCreated;
}

/** Whether Redis and Postgres answer, and the queues' depths by state. */
function stateGauges(app: FastifyInstance, register: Registry): void {
  new Gauge({
    name: 'mpo_dependency_up',
    help: '1 when the dependency answered within a second during this scrape',
    labelNames: ['dependency'] as const,
    registers: [register],
    async collect() {
      const answers = (fn: () => Promise<unknown>) =>
        withinASecond(fn()).then(
          () => 1,
          () => 0,
        );
      const [redis, postgres] = await Promise.all([
        answers(() => app.queues.redis.ping()),
        answers(() => app.db.ping()),
      ]);
      this.set({ dependency: 'redis' }, redis);
      this.set({ dependency: 'postgres' }, postgres);
    },
  });
  new Gauge({
    name: 'mpo_queue_jobs',
    help: 'BullMQ jobs by queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: [register],
    async collect() {
      try {
        const counts = await Promise.all(
          ALL_QUEUES.map((name) => app.queues.byName.get(name)!.getJobCounts(...JOB_STATES)),
        );
        ALL_QUEUES.forEach((queue, i) => {
          for (const state of JOB_STATES) this.set({ queue, state }, counts[i]![state] ?? 0);
        });
      } catch {
        // Redis away: mpo_dependency_up says so; the last values stay.
      }
    },
  });
}

/** Trials by status and the outcomes of those that ended. */
function trialMetrics(app: FastifyInstance, register: Registry): void {
  // Outcome totals are read from Postgres (the workers write them); the counter grows by the difference.
  const seen = new Map<string, number>();
  const outcomes = new Counter({
    name: 'mpo_trial_outcomes_total',
    help: 'Trials that ended, by outcome (from Postgres; grows as workers finish trials)',
    labelNames: ['outcome'] as const,
    registers: [register],
  });
  new Gauge({
    name: 'mpo_trials',
    help: 'Trials by status',
    labelNames: ['status'] as const,
    registers: [register],
    async collect() {
      try {
        const counts = await withinASecond(app.db.runs.trialStatusCounts());
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
        for (const outcome of TRIAL_TERMINAL_STATUSES) {
          const delta = counts[outcome] - (seen.get(outcome) ?? 0);
          if (delta > 0) outcomes.inc({ outcome }, delta);
          seen.set(outcome, counts[outcome]);
        }
      } catch {
        // Postgres away: mpo_dependency_up says so.
      }
    },
  });
  new Gauge({
    name: 'mpo_queue_oldest_waiting_seconds',
    help: 'Age of the oldest waiting job per queue (0 when none waits)',
    labelNames: ['queue'] as const,
    registers: [register],
    async collect() {
      try {
        const now = Date.now();
        const oldest = await Promise.all(
          ALL_QUEUES.map((name) => app.queues.byName.get(name)!.getJobs(['wait'], 0, 0, true)),
        );
        ALL_QUEUES.forEach((queue, i) => {
          const job = oldest[i]![0];
          this.set({ queue }, job ? Math.max(0, now - job.timestamp) / 1000 : 0);
        });
      } catch {
        // Redis away: mpo_dependency_up says so.
      }
    },
  });
}

/** Jobs finished per queue and state, from BullMQ's metrics. */
function finishedJobs(app: FastifyInstance, register: Registry): void {
  // BullMQ's own per-queue totals of finished jobs (workers run with metrics
  // on); the counter grows by the difference since the last scrape.
  const finishedSeen = new Map<string, number>();
  new Counter({
    name: 'mpo_queue_jobs_finished_total',
    help: 'Jobs finished per queue, by state (completed | failed), from BullMQ metrics',
    labelNames: ['queue', 'state'] as const,
    registers: [register],
    async collect() {
      try {
        for (const queue of ALL_QUEUES) {
          const q = app.queues.byName.get(queue)!;
          for (const state of FINISHED_JOB_STATES) {
            const { meta } = await q.getMetrics(state, 0, 0);
            const key = `${queue}/${state}`;
            const delta = meta.count - (finishedSeen.get(key) ?? 0);
            if (delta > 0) this.inc({ queue, state }, delta);
            else this.inc({ queue, state }, 0);
            finishedSeen.set(key, Math.max(meta.count, finishedSeen.get(key) ?? 0));
          }
        }
      } catch {
        // Redis away: mpo_dependency_up says so.
      }
    },
  });
}

/** The worker agents online and their device slots. */
function agentGauges(app: FastifyInstance, register: Registry): void {
  const agents = async () => readAgents(app.queues.redis, app.queues.prefix);
  new Gauge({
    name: 'mpo_worker_agents_online',
    help: 'Worker agents with a live heartbeat',
    registers: [register],
    async collect() {
      try {
        this.set((await agents()).length);
      } catch {
        // Redis away: mpo_dependency_up says so.
      }
    },
  });
  new Gauge({
    name: 'mpo_worker_slots',
    help: 'Device slots of the online agents, by device kind and state (busy | free)',
    labelNames: ['device', 'state'] as const,
    registers: [register],
    async collect() {
      try {
        const totals = new Map<string, { busy: number; free: number }>();
        for (const a of await agents()) {
          for (const s of a.slots) {
            const t = totals.get(s.device) ?? { busy: 0, free: 0 };
            t.busy += s.total - s.free;
            t.free += s.free;
            totals.set(s.device, t);
          }
        }
        this.reset();
        for (const [device, t] of totals) {
          this.set({ device, state: 'busy' }, t.busy);
          this.set({ device, state: 'free' }, t.free);
        }
      } catch {
        // Redis away: mpo_dependency_up says so.
      }
    },
  });
}

/** Run times of completed jobs per queue. */
function jobDurations(app: FastifyInstance, register: Registry): void {
  // Job run times (processedOn → finishedOn) as a histogram: at each scrape the
  // jobs completed since the last one are observed once (BullMQ keeps the finished
  // jobs; the watermark is the newest finishedOn seen, per queue).
  const watermark = new Map<string, { at: number; ids: Set<string> }>();
  new Histogram({
    name: 'mpo_job_duration_seconds',
    help: 'Run time (processedOn → finishedOn) of completed jobs per queue',
    labelNames: ['queue'] as const,
    // Evaluation jobs take seconds to minutes, training trials minutes to hours.
    buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200],
    registers: [register],
    async collect() {
      try {
        await Promise.all(
          ALL_QUEUES.map(async (queue) => {
            const jobs = await app.queues.byName.get(queue)!.getJobs(['completed'], 0, 999);
            const seen = watermark.get(queue) ?? { at: 0, ids: new Set<string>() };
            const next = { at: seen.at, ids: new Set(seen.ids) };
            for (const j of jobs) {
              if (!j.finishedOn || !j.processedOn || !j.id) continue;
              if (j.finishedOn < seen.at || (j.finishedOn === seen.at && seen.ids.has(j.id))) continue;
              this.observe({ queue }, (j.finishedOn - j.processedOn) / 1000);
              if (j.finishedOn > next.at) next.ids.clear();
              if (j.finishedOn >= next.at) {
                next.at = j.finishedOn;
                next.ids.add(j.id);
              }
            }
            watermark.set(queue, next);
          }),
        );
      } catch {
        // Redis away: mpo_dependency_up says so.
      }
    },
  });
}

/** Throughput and all-reduce bandwidth of the running trials. */
function trainerGauges(app: FastifyInstance, register: Registry): void {
  // What running trainers report each step (metric rows the workers write).
  const running = (name: string, metric: string, help: string, reduce: 'sum' | 'mean', scale = 1) =>
    new Gauge({
      name,
      help,
      registers: [register],
      async collect() {
        try {
          const rows = await withinASecond(app.db.metrics.latestOfRunningTrials(metric));
          const total = rows.reduce((a, r) => a + r.value, 0);
          this.set(scale * (reduce === 'sum' ? total : rows.length ? total / rows.length : 0));
        } catch {
          // Postgres away: mpo_dependency_up says so.
        }
      },
    });
  running(
    'mpo_trainer_tokens_per_second',
    'tokensPerSec',
    'Training throughput summed over running trials (each trial’s latest step)',
    'sum',
  );
  running(
    'mpo_allreduce_bus_bandwidth_bytes_per_second',
    'allreduce/busbw_gbps',
    'Gradient all-reduce bus bandwidth in bytes/s (nccl-tests definition), mean over running multi-rank trials',
    'mean',
    1e9, // the trainer reports GB/s (packages/trainer/src/step.ts); Prometheus wants base units
  );
}

/** Outbox rows waiting to be published. */
function outboxPending(app: FastifyInstance, register: Registry): void {
  new Gauge({
    name: 'mpo_outbox_pending',
    help: 'Outbox rows not yet published to Redis',
    registers: [register],
    async collect() {
      try {
        this.set(await withinASecond(app.db.outbox.pendingCount({ prefix: app.queues.prefix })));
      } catch {
        // Postgres away: mpo_dependency_up says so.
      }
    },
  });
}

export default fp(
  async (app) => {
    const register = new Registry();
    collectDefaultMetrics({ register, prefix: 'mpo_api_' });

    httpMetrics(app, register);
    const runsCreated = appCounters(app, register);
    stateGauges(app, register);
    trialMetrics(app, register);
    finishedJobs(app, register);
    agentGauges(app, register);
    jobDurations(app, register);
    trainerGauges(app, register);
    outboxPending(app, register);

    app.decorate('metricsRegistry', register);
    app.decorate('appMetrics', { runsCreated });
    app.get(
      '/metrics',
      {
        // Answers through a Postgres outage (mpo_dependency_up says it is away): auth.ts authOffline.
        config: { authOffline: true },
        schema: { tags: ['ops'], summary: 'Prometheus metrics', produces: ['text/plain'] },
      },
      async (_req, reply) => {
        const body = await register.metrics();
        return reply.type(register.contentType).send(body);
      },
    );
  },
  { name: 'metrics', dependencies: ['db', 'queues', 'outbox'] },
);
