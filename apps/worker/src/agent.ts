// The worker agent: owns device slots and takes train/eval jobs that fit them.
//
// Slot gating: jobs are fetched manually (`worker.getNextJob`), one fetch
// loop per train/eval queue of each device kind the agent has, and a loop
// fetches only while its device has a free slot. BullMQ's own concurrency
// counts jobs, not slots, and cannot look at a job before taking it; fetching
// manually lets a job be taken only when there is room for at least one rank,
// and a job needing more slots than are free goes straight back to the queue
// as delayed (`moveToDelayed`, no attempt used): soon when this agent could
// run it later, after a longer pause when it never could (it has fewer slots
// in total than the job's ranks), so that an agent with enough slots takes it.
// Such a job is never processed here and never failed here.
//
// Manual fetching means the agent does what BullMQ's processor loop would:
// renews the locks of its active jobs every lockDuration/2, runs the stalled
// checker (which re-queues jobs whose agent died once their lock expires),
// and completes, fails, delays or releases each job itself. The run-level
// `sweep` jobs need no slot and use an ordinary processor.
//
// Trials spanning hosts (slots.ranksPerHost): the agent that fetched the job
// takes one host's share of slots and opens a gang (train-run.ts); a gang
// loop here takes seats in other agents' open gangs while this agent has the
// slots they need (gang-run.ts, README "Trials that span hosts").

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDb, type Db } from '@mpo/db';
import {
  AGENT_TTL_SECONDS,
  assertNoEviction,
  type Device,
  evalQueue,
  fits,
  hostsOf,
  joinGang,
  localSlots,
  openGangIds,
  parseEvalJobPayload,
  parseTrainJobPayload,
  QUEUES,
  type RunningJob,
  readGang,
  redactUrl,
  redisKeys,
  removeHeartbeat,
  type SlotRequirement,
  trainQueue,
  WORKER_DEFAULTS,
  WORKER_REDIS_OPTIONS,
  writeHeartbeat,
} from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import { FlowProducer, type Job, UnrecoverableError, Worker, type WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { type AgentConfig, REPO_ROOT } from './config.js';
import { cpuCores, type DeviceSlots, detectDevices, type SlotLease, SlotPool } from './devices.js';
import { EvalRun } from './eval-run.js';
import { GANG_POLL_MS, GangSeat } from './gang-run.js';
import { gateGpuSlots, probeEngineCuda } from './gpu-gate.js';
import { jobLogger, type Logger } from './log.js';
import { type MaterializeContext, topUp } from './materialize.js';
import type { Outcome } from './outcome.js';
import { withTimeout } from './retry.js';
import { RunSpecs } from './run-specs.js';
import { finalizeRun } from './sweep-run.js';
import { type RunContext, TrainRun } from './train-run.js';

/** A job whose slots are busy now comes back after this long. */
export const LATER_DELAY_MS = 1_000;
/**
 * A job this agent can never run (fewer slots in total than its ranks) comes
 * back soon, while this agent stops fetching from that queue for a while, so
 * that an agent with enough slots gets to it first.
 */
export const NEVER_DELAY_MS = 250;
export const NEVER_BACKOFF_MS = 2_000;

interface Active {
  job: Job;
  token: string;
  queue: string;
  lease: SlotLease;
  run: TrainRun | EvalRun;
  startedAt: number;
  /** When the job's lock runs out unless renewed (ms since epoch, from when the renewal was sent). */
  lockedUntil: number;
  lost: boolean;
  done: Promise<void>;
}

export interface AgentOptions {
  log: Logger;
  /** Device slots (default: detected from MPO_DEVICES / nvidia-smi / cores). */
  devices?: DeviceSlots[];
}

const VERSION = (() => {
  try {
    return (
      JSON.parse(readFileSync(join(REPO_ROOT, 'apps/worker/package.json'), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'unknown';
  }
})();

/** Detected slots, with GPU slots kept only where the engine has CUDA and sees the device (gpu-gate.ts). */
function agentDevices(cfg: AgentConfig, log: Logger): DeviceSlots[] {
  const detected = detectDevices({ devices: cfg.devices, cpuCores: cfg.cpuCores });
  if (!detected.some((d) => d.device === 'gpu')) return detected;
  return gateGpuSlots(detected, probeEngineCuda(), log, {
    explicit: cfg.devices !== undefined,
    cpuFallback: cpuCores(cfg.cpuCores),
  });
}

export class Agent {
  readonly slots: SlotPool;
  readonly log: Logger;
  readonly startedAt = Date.now();
  private redis!: Redis;
  private db!: Db;
  private specs!: RunSpecs;
  /** Creates runs' trials lazily (materialize.ts). */
  private lazy!: MaterializeContext;
  private readonly workers: { worker: Worker; device: Device; kind: 'train' | 'eval' }[] = [];
  private sweepWorker: Worker | null = null;
  private readonly running = new Map<string, Active>();
  /** Seats this agent holds in other agents' gangs (trials spanning hosts), by gang id. */
  private readonly seats = new Map<string, { seat: GangSeat; done: Promise<void> }>();
  private readonly fetchAbort = new AbortController();
  private fetchLoops: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  private renewing = false;
  private stopping: Promise<void> | null = null;
  private beatQueued = false;

  constructor(
    readonly cfg: AgentConfig,
    opts: AgentOptions,
  ) {
    this.log = opts.log;
    this.slots = new SlotPool(opts.devices ?? agentDevices(cfg, opts.log));
  }

  /** Queue names this agent listens to (train and eval queues of its device kinds, and sweep). */
  get queues(): string[] {
    return [...this.workers.map((w) => w.worker.name), QUEUES.sweep];
  }

  async start(): Promise<void> {
    const { cfg, log } = this;
    this.redis = new Redis(cfg.redisUrl, { ...WORKER_REDIS_OPTIONS, connectionName: `mpo-agent:${cfg.id}` });
    this.redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
    // Commands issued while Redis is away wait in the offline queue (trials keep training meanwhile).
    this.redis.on('reconnecting', (delayMs: number) =>
      log.warn({ delayMs }, 'redis connection lost; reconnecting'),
    );
    await assertNoEviction(this.redis, cfg.redisUrl);
    this.db = createDb(cfg.databaseUrl);
    this.specs = new RunSpecs(this.db);
    const flow = new FlowProducer({ connection: this.redis, prefix: cfg.prefix });
    this.lazy = { db: this.db, specs: this.specs, flow, prefix: cfg.prefix };

    const workerOpts: WorkerOptions = {
      connection: this.redis,
      prefix: cfg.prefix,
      autorun: false,
      ...WORKER_DEFAULTS,
      lockDuration: cfg.lockDurationMs,
      stalledInterval: cfg.stalledIntervalMs,
      drainDelay: cfg.drainDelaySeconds,
    };
    for (const { device } of this.slots.devices) {
      for (const kind of ['train', 'eval'] as const) {
        const name = kind === 'train' ? trainQueue(device) : evalQueue(device);
        const worker = new Worker(name, null, workerOpts);
        worker.on('error', (err) => log.warn({ queue: name, err: err.message }, 'queue worker error'));
        this.workers.push({ worker, device, kind });
      }
    }
    for (const { worker } of this.workers) await worker.startStalledCheckTimer();

    this.sweepWorker = new Worker(
      QUEUES.sweep,
      (job, token) => finalizeRun(this.db, job, jobLogger(log, job), { m: this.lazy, token }),
      {
        ...workerOpts,
        autorun: true,
        concurrency: 1,
      },
    );
    this.sweepWorker.on('error', (err) =>
      log.warn({ queue: QUEUES.sweep, err: err.message }, 'queue worker error'),
    );
    this.sweepWorker.on('failed', (job, err) =>
      log.error({ jobId: job?.id, err: err.message }, 'finalizing a run failed'),
    );

    await this.beat();
    this.timers.push(setInterval(() => void this.beat(), cfg.heartbeatMs));
    this.timers.push(setInterval(() => void this.renewLocks(), Math.max(250, cfg.lockDurationMs / 2)));
    this.fetchLoops = this.workers.map((w) => this.fetchLoop(w.worker, w.device, w.kind));
    this.fetchLoops.push(this.gangLoop());
    log.info(
      {
        slots: this.slots.snapshot(),
        queues: this.queues,
        prefix: cfg.prefix,
        redis: redactUrl(cfg.redisUrl),
        lockDurationMs: cfg.lockDurationMs,
        stalledIntervalMs: cfg.stalledIntervalMs,
      },
      'agent started',
    );
  }

  /**
   * Graceful shutdown: stop fetching, ask every running trial to finish its
   * step, checkpoint and give its job back to the queue, wait for them, then
   * close the queues and remove the heartbeat.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ running: this.running.size }, 'shutting down');
      this.fetchAbort.abort();
      for (const a of this.running.values()) a.run.stop('shutdown');
      await Promise.allSettled(this.fetchLoops);
      for (const s of this.seats.values()) s.seat.stop();
      await Promise.allSettled([...this.running.values()].map((a) => a.done));
      await Promise.allSettled([...this.seats.values()].map((s) => s.done));
      for (const t of this.timers) clearInterval(t);
      await this.sweepWorker?.close();
      await this.lazy?.flow.close().catch(() => {});
      await Promise.allSettled(this.workers.map((w) => w.worker.close()));
      await removeHeartbeat(this.redis, this.cfg.prefix, this.cfg.id).catch(() => {});
      if (!(await this.db.close())) this.log.warn('Postgres pools did not close in time; going on');
      await this.redis.quit().catch(() => this.redis.disconnect());
      this.log.info('agent stopped');
    })();
    return this.stopping;
  }

  private async fetchLoop(worker: Worker, device: Device, kind: 'train' | 'eval'): Promise<void> {
    const signal = this.fetchAbort.signal;
    let n = 0;
    while (!signal.aborted) {
      await this.slots.waitFree(device, signal);
      if (signal.aborted) break;
      const token = `${this.cfg.id}:${worker.name}:${n++}`;
      let job: Job | undefined;
      try {
        job = await worker.getNextJob(token, { block: true });
      } catch (err) {
        this.log.warn({ queue: worker.name, err: errorMessage(err) }, 'fetching a job failed');
        await sleep(1_000, undefined, { signal }).catch(() => {});
        continue;
      }
      if (!job) continue;
      if (signal.aborted) {
        // Fetched while shutting down: give it straight back.
        await job.moveToWait(token).catch(() => {});
        break;
      }
      const backoff = await this.dispatch(worker, job, token, kind);
      if (backoff > 0) await sleep(backoff, undefined, { signal }).catch(() => {});
    }
  }

  /** Takes seats in other agents' open gangs while this agent has the slots they need (gang-run.ts). */
  private async gangLoop(): Promise<void> {
    const signal = this.fetchAbort.signal;
    while (!signal.aborted) {
      try {
        for (const id of await openGangIds(this.redis, this.cfg.prefix)) {
          if (signal.aborted) break;
          if (!this.seats.has(id)) await this.tryJoin(id);
        }
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'looking for open gangs failed');
      }
      await sleep(GANG_POLL_MS, undefined, { signal }).catch(() => {});
    }
  }

  private async tryJoin(id: string): Promise<void> {
    const { cfg } = this;
    const g = await readGang(this.redis, cfg.prefix, id);
    if (g?.state !== 'open' || g.seats.some((s) => s.hostId === cfg.hostId)) return;
    const device = this.slots.devices.find((d) => d.device === g.device)?.device;
    const lease = device ? this.slots.tryAcquire({ device, count: g.ranksPerHost }) : null;
    if (!lease) return;
    const joined = await joinGang(this.redis, cfg.prefix, id, { agentId: cfg.id, hostId: cfg.hostId }).catch(
      (err: Error) => ({ ok: false as const, reason: err.message }),
    );
    if (!joined.ok) {
      this.slots.release(lease);
      return;
    }
    const log = this.log.child({ gang: id, hostRank: joined.hostRank });
    log.info({ slots: lease.ids }, 'joined a gang');
    const seat = new GangSeat({ cfg, redis: this.redis, log }, id, joined.hostRank, lease);
    const done = seat
      .run()
      .catch((err) => log.error({ err: errorMessage(err) }, 'gang seat failed'))
      .finally(() => {
        this.seats.delete(id);
        this.slots.release(lease);
        void this.beat();
      });
    this.seats.set(id, { seat, done });
    void this.beat();
  }

  /** Starts the job if it fits; returns how long the fetch loop should pause before fetching again. */
  private async dispatch(worker: Worker, job: Job, token: string, kind: 'train' | 'eval'): Promise<number> {
    const log = jobLogger(this.log, job);
    let req: SlotRequirement;
    try {
      req = (kind === 'train' ? parseTrainJobPayload(job.data) : parseEvalJobPayload(job.data)).slots;
      if (req.ranksPerHost !== undefined && req.count % req.ranksPerHost !== 0)
        throw new Error(`slots.ranksPerHost (${req.ranksPerHost}) must divide slots.count (${req.count})`);
      if (kind === 'eval' && hostsOf(req) > 1) throw new Error('an eval job runs on one host');
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'invalid job payload');
      await job.moveToFailed(new UnrecoverableError(errorMessage(err)), token, false).catch(() => {});
      return 0;
    }
    const fit = fits(req, this.slots.snapshot());
    const lease = fit === 'now' ? this.slots.tryAcquire(localSlots(req)) : null;
    if (!lease) {
      const delay = fit === 'never' ? NEVER_DELAY_MS : LATER_DELAY_MS;
      log.debug({ slots: req, fit, delayMs: delay }, 'job does not fit the free slots; putting it back');
      await job
        .moveToDelayed(Date.now() + delay, token)
        .catch((err) => log.warn({ err: errorMessage(err) }, 'could not put the job back'));
      return fit === 'never' ? NEVER_BACKOFF_MS : 0;
    }
    const ctx: RunContext = {
      cfg: this.cfg,
      db: this.db,
      redis: this.redis,
      log,
      agentAlive: async (id) => (await this.redis.exists(redisKeys(this.cfg.prefix).agent(id))) === 1,
      specs: this.specs,
    };
    const run = kind === 'train' ? new TrainRun(ctx, job, lease) : new EvalRun(ctx, job, lease);
    const active: Active = {
      job,
      token,
      queue: worker.name,
      lease,
      run,
      startedAt: Date.now(),
      lockedUntil: Date.now() + this.cfg.lockDurationMs,
      lost: false,
      done: Promise.resolve(),
    };
    this.running.set(job.id!, active);
    log.info({ slots: lease.ids, device: lease.device, waitedMs: Date.now() - job.timestamp }, 'job started');
    void this.beat();
    active.done = run
      .run()
      .then((outcome) => this.apply(active, outcome, log))
      .catch((err) => log.error({ err }, 'job handling failed'))
      .finally(() => {
        this.running.delete(job.id!);
        this.slots.release(lease);
        void this.beat();
      });
    if (kind === 'train') void this.topUp(job, log);
    return 0;
  }

  /**
   * A trial of the run starts: create its next trials, keeping TRIAL_WINDOW unstarted ones ahead of the
   * agents (materialize.ts). A failure costs parallelism only: the run's sweep job creates what is left.
   */
  private async topUp(job: Job, log: Logger): Promise<void> {
    const { runId, trialId } = job.data as { runId: string; trialId: string };
    try {
      const n = await topUp(this.lazy, runId, { starting: trialId });
      if (n > 0) log.info({ created: n }, 'created the run’s next trials');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'creating the run’s next trials failed; its sweep job will');
    }
  }

  /** Applies a run's outcome to its BullMQ job. */
  private async apply(a: Active, outcome: Outcome, log: Logger): Promise<void> {
    const { job, token } = a;
    if (a.lost && outcome.kind !== 'abandon') {
      log.warn({ outcome: outcome.kind }, 'lock was lost; leaving the job to its new owner');
      return;
    }
    switch (outcome.kind) {
      case 'complete':
        await job.moveToCompleted(outcome.result, token, false);
        log.info({ result: outcome.result }, 'job completed');
        break;
      case 'release':
        await job.moveToWait(token);
        log.info({ reason: outcome.reason }, 'job released back to the queue');
        break;
      case 'delay':
        await job.moveToDelayed(Date.now() + outcome.ms, token);
        log.info({ reason: outcome.reason, delayMs: outcome.ms }, 'job delayed');
        break;
      case 'abandon':
        log.warn({ reason: outcome.reason }, 'job abandoned');
        break;
      case 'fail': {
        const err = outcome.unrecoverable ? new UnrecoverableError(outcome.error.message) : outcome.error;
        await job.moveToFailed(err, token, false);
        log.error({ err: outcome.error.message, unrecoverable: outcome.unrecoverable }, 'job failed');
        break;
      }
    }
  }

  /**
   * Renews the lock of every active job. A lock whose renewal failed or got
   * no answer (Redis away or paused) by the time it ran out, or that another
   * agent now holds, means the job may be handed out again: the run is asked
   * to checkpoint and stop (SIGTERM, SIGKILL after the grace) while it still
   * holds the trial folder's lock, so the next attempt resumes from that
   * checkpoint and no step is lost. A renewal that is merely slow but answers
   * is not a loss (BullMQ's lock was extended when Redis ran it).
   */
  private async renewLocks(): Promise<void> {
    if (this.renewing) return; // the previous round is still waiting for Redis (bounded below)
    this.renewing = true;
    try {
      for (const a of this.running.values()) {
        if (a.lost) continue;
        const sentAt = Date.now();
        try {
          // Bounded: a renewal stuck behind a paused Redis must not hold back the next rounds.
          const ok = await withTimeout(
            a.job.extendLock(a.token, this.cfg.lockDurationMs),
            this.cfg.lockDurationMs,
            'renewing the job lock',
          );
          if (ok) a.lockedUntil = Math.max(a.lockedUntil, sentAt + this.cfg.lockDurationMs);
          else if (!a.lost) this.loseLock(a, 'another agent holds it (the job was re-queued)');
        } catch (err) {
          const message = errorMessage(err);
          if (!a.lost && Date.now() >= a.lockedUntil)
            this.loseLock(a, `ran out ${Date.now() - a.lockedUntil} ms ago; last renewal: ${message}`);
          else jobLogger(this.log, a.job).warn({ err: message }, 'renewing the job lock failed');
        }
      }
    } finally {
      this.renewing = false;
    }
  }

  private loseLock(a: Active, why: string): void {
    a.lost = true;
    jobLogger(this.log, a.job).error(
      { why, graceMs: this.cfg.stopGraceMs },
      'lost the job lock; asking the child to checkpoint and stop',
    );
    a.run.stop('lost');
  }

  /** Writes the heartbeat (coalesced: at most one write in flight). */
  private async beat(): Promise<void> {
    if (this.beatQueued) return;
    this.beatQueued = true;
    try {
      await Promise.resolve();
      this.beatQueued = false;
      const running: RunningJob[] = [...this.running.values()].map((a) => ({
        queue: a.queue,
        jobId: a.job.id ?? '',
        runId: (a.job.data as { runId: string }).runId,
        trialId: (a.job.data as { trialId: string }).trialId,
        slots: { device: a.lease.device, count: a.lease.slots.length },
        assigned: a.lease.ids.map(String),
        startedAt: a.startedAt,
      }));
      await writeHeartbeat(
        this.redis,
        this.cfg.prefix,
        {
          id: this.cfg.id,
          host: this.cfg.host,
          pid: process.pid,
          version: VERSION,
          startedAt: this.startedAt,
          lastSeen: Date.now(),
          queues: this.queues,
          slots: this.slots.snapshot(),
          running,
        },
        Math.max(AGENT_TTL_SECONDS, Math.ceil((3 * this.cfg.heartbeatMs) / 1000)),
      );
    } catch (err) {
      this.beatQueued = false;
      this.log.warn({ err: errorMessage(err) }, 'heartbeat failed');
    }
  }
}
