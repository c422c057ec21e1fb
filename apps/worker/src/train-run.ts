// One train job on one agent: the trial's child trainer from start to exit.
//
//   payload → trainer config (trainer-config.ts) → trial folder lock → Trial
//   RUNNING → ranks through the launcher (child.ts) → protocol lines (followed
//   from a file, protocol.ts) → metrics/checkpoints to Postgres in batches
//   (trial-writer.ts), progress to BullMQ, cancel key and ASHA rungs checked
//   → final Trial row → an Outcome for the agent to apply to the job.
//
// Stopping: cancel (run's cancel key) and ASHA (rung decision) SIGTERM the
// child, which finishes its step, checkpoints and exits; the trial becomes
// CANCELLED / STOPPED and the job completes. Agent shutdown does the same but
// hands the job back to the queue. A lost job lock does the same too, and
// leaves the job to whoever gets it next: the trial folder's lock is held
// until the child has exited, so the next attempt resumes from the checkpoint
// the child wrote on its way out (killing it at once lost every step since
// the last periodic checkpoint).

import { join } from 'node:path';
import type { Db, TrialStatus } from '@mpo/db';
import {
  cancelGang,
  decideAtRung,
  type Gang,
  hostsOf,
  isCancelled,
  isInvalidInputExit,
  isTrialTerminal,
  localSlots,
  metricRows,
  redisKeys,
  type TrainerCheckpoint,
  type TrainerDone,
  type TrainerMessage,
  type TrainJobData,
  type TrainJobResult,
  type TrainProgress,
} from '@mpo/queue';
import { errorMessage, writeFileWhole } from '@mpo/util';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { type ChildHandle, startChild } from './child.js';
import { Coalescer } from './coalesce.js';
import type { AgentConfig } from './config.js';
import type { SlotLease } from './devices.js';
import { formGang, GANG_YIELD_DELAY_MS, launchGangRanks, watchGang } from './gang-run.js';
import type { Logger } from './log.js';
import { isUnrecoverable, type Outcome, willRetry } from './outcome.js';
import { newProtocolFile, ProtocolFollower, replayProtocol } from './protocol.js';
import { AbortedError, retrying, withTimeout } from './retry.js';
import { type RunSpecs, trainJob } from './run-specs.js';
import { buildTrainConfig } from './trainer-config.js';
import { TrialEvents } from './trial-events.js';
import { acquireTrialLock } from './trial-lock.js';
import { type RungDue, TrialState } from './trial-state.js';
import { TrialWriter } from './trial-writer.js';

export interface RunContext {
  cfg: AgentConfig;
  db: Db;
  redis: Redis;
  log: Logger;
  /** Whether another agent's heartbeat is alive (trial folder lock held on another host). */
  agentAlive: (agentId: string) => Promise<boolean>;
  /** Run specs, which slim jobs are rebuilt from (run-specs.ts). */
  specs: RunSpecs;
}

type StopReason =
  | { kind: 'cancel' }
  | { kind: 'asha'; rung: number; reason: string }
  | { kind: 'shutdown' }
  | { kind: 'lost' }
  /** A trial spanning hosts lost a host (gang-run.ts): kill at once, fail the attempt, retry. */
  | { kind: 'peer'; reason: string }
  /** Its metrics cannot be stored, ever (trial-writer.ts onFatal): checkpoint, stop, fail for good. */
  | { kind: 'db'; reason: string };

/**
 * Protocol messages read but not yet handled: with the metric buffer's bound
 * (TrialWriter `full`), what the follower may hold in memory before it stops
 * reading (a slow Redis, e.g. ASHA decisions, backs the chain up too).
 */
const MAX_QUEUED_MESSAGES = 1_000;

type TrialRow = Awaited<ReturnType<Db['runs']['trial']>>;
type TrainPlan = ReturnType<typeof buildTrainConfig>;

/** What an attempt is before it starts: the job's payload, the trial folder, the attempt's number, its config and gang. */
interface AttemptPlan {
  d: TrainJobData;
  /** The trial folder (checkpoints, protocol files, TensorBoard log). */
  output: string;
  /** 1-based; stored as Trial.attempt. */
  number: number;
  configPath: string;
  /** The hosts of a trial spanning several (gang-run.ts); null on one host. */
  gang: Gang | null;
}

/** One attempt at training the trial: what the launch, the protocol handlers and the final row share. */
interface Attempt extends AttemptPlan {
  /** This attempt's protocol file (the child's JSON lines, followed from disk). */
  protocolFile: string;
  state: TrialState;
  writer: TrialWriter;
  /** The trial's TensorBoard log (trial-events.ts), open while the child runs. */
  events: TrialEvents;
  progress: Coalescer<TrainProgress>;
}

export class TrainRun {
  private stopReason: StopReason | null = null;
  private child: ChildHandle | null = null;
  private killTimer: NodeJS.Timeout | undefined;
  /** Aborted by any stop before the child runs (start-up retries give up), and by a lost lock. */
  private readonly startAbort = new AbortController();
  private readonly lostAbort = new AbortController();
  private chain: Promise<void> = Promise.resolve();
  /** Messages in `chain` not yet handled. */
  private queued = 0;
  private cancelCheck: Promise<void> | null = null;
  private done: TrainerDone | null = null;
  private errorLine: string | null = null;
  private lastCheckpoint: TrainerCheckpoint | null = null;

  constructor(
    private readonly ctx: RunContext,
    private readonly job: Job,
    private readonly lease: SlotLease,
  ) {}

  /** The agent stops the run after a checkpoint: 'shutdown' gives the job back, 'lost' leaves it to its next owner. */
  stop(kind: 'shutdown' | 'lost'): void {
    this.requestStop({ kind });
  }

  private currentStop(): StopReason | null {
    return this.stopReason;
  }

  private requestStop(reason: StopReason): void {
    if (reason.kind === 'lost') {
      this.stopReason = reason;
      this.lostAbort.abort();
      this.startAbort.abort();
      this.signalChild();
      return;
    }
    if (this.stopReason) return; // the first reason stands (a lost lock overrides, above)
    this.stopReason = reason;
    if (reason.kind === 'peer') this.errorLine ??= `a host of the trial was lost: ${reason.reason}`;
    if (reason.kind === 'db') this.errorLine ??= `its metrics cannot be stored: ${reason.reason}`;
    this.ctx.log.info({ reason }, 'stopping the trial');
    this.startAbort.abort();
    this.signalChild();
  }

  /** SIGTERM (finish the step, checkpoint, exit), then SIGKILL after the grace period. */
  private signalChild(): void {
    const child = this.child;
    if (!child || !this.stopReason) return;
    if (this.stopReason.kind === 'peer') {
      // A peer host's rank died: the others' collectives would block until the c10d timeout, so there is
      // nothing to finish and no checkpoint to write. (A lost job lock still gets SIGTERM: checkpoint, then stop.)
      child.signal('SIGKILL');
      return;
    }
    child.signal('SIGTERM');
    clearTimeout(this.killTimer);
    this.killTimer = setTimeout(() => {
      this.ctx.log.warn({ graceMs: this.ctx.cfg.stopGraceMs }, 'child ignored SIGTERM; killing it');
      child.signal('SIGKILL');
    }, this.ctx.cfg.stopGraceMs);
  }

  async run(): Promise<Outcome> {
    try {
      return await this.runInner();
    } catch (err) {
      if (err instanceof AbortedError) {
        return this.stopReason?.kind === 'lost'
          ? { kind: 'abandon', reason: 'lock lost' }
          : { kind: 'release', reason: 'stopped before the trainer started' };
      }
      return { kind: 'fail', error: err as Error, unrecoverable: isUnrecoverable(err) };
    } finally {
      clearTimeout(this.killTimer);
    }
  }

  private dbRetry<T>(what: string, fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    // A query on a connection that silently died must fail (and be retried), not hang the trial.
    return retrying(() => withTimeout(fn(), 30_000, what), {
      what,
      log: this.ctx.log,
      maxMs: this.ctx.cfg.dbRetryMaxMs,
      signal,
      fatal: isUnrecoverable,
    });
  }

  private async runInner(): Promise<Outcome> {
    const { cfg, db, redis } = this.ctx;
    const d = await trainJob(this.job.data, (runId) =>
      this.dbRetry('read the run spec', () => this.ctx.specs.get(runId), this.startAbort.signal),
    );
    const trial = await this.dbRetry('read trial', () => db.runs.trial(d.trialId), this.startAbort.signal);
    if (trial.runId !== d.runId) {
      throw new Error(`trial ${d.trialId} belongs to run ${trial.runId}, not ${d.runId}`);
    }
    if (trial.status === 'CANCELLED' || (await isCancelled(redis, cfg.prefix, d.runId))) {
      return this.cancelledBeforeStart(d, trial);
    }
    const plan = buildTrainConfig(d, cfg, { gpuRankThreads: cfg.gpuRankThreads });
    const lock = await acquireTrialLock(
      plan.output,
      { agentId: cfg.id, host: cfg.host, pid: process.pid, jobId: this.job.id ?? '' },
      this.ctx.agentAlive,
    );
    if (!lock.ok) {
      return {
        kind: 'delay',
        ms: cfg.lockDurationMs,
        reason: `trial folder held by agent ${lock.owner.agentId} (pid ${lock.owner.pid} on ${lock.owner.host})`,
      };
    }
    try {
      return await this.train(d, plan, trial);
    } finally {
      lock.release();
    }
  }

  private async cancelledBeforeStart(d: TrainJobData, trial: TrialRow): Promise<Outcome> {
    if (trial.status !== 'CANCELLED') {
      await this.dbRetry(
        'mark trial CANCELLED',
        () => this.ctx.db.runs.updateTrial(d.trialId, { status: 'CANCELLED', finishedAt: new Date() }),
        this.startAbort.signal,
      );
    }
    this.ctx.log.info('run cancelled before the trial started');
    const result: TrainJobResult = {
      status: 'CANCELLED',
      step: trial.currentStep,
      checkpoint: null,
      bestMetric: trial.bestMetric,
    };
    return { kind: 'complete', result };
  }

  private async train(d: TrainJobData, plan: TrainPlan, trial: TrialRow): Promise<Outcome> {
    const { cfg } = this.ctx;
    const configPath = join(plan.output, 'train-config.json');
    writeFileWhole(configPath, `${JSON.stringify(plan.config, null, 2)}\n`);

    let gang: Gang | null = null;
    const hosts = hostsOf(d.slots);
    if (hosts > 1) {
      const formed = await formGang(
        this.ctx,
        {
          jobId: this.job.id ?? d.trialId,
          hosts,
          ranksPerHost: localSlots(d.slots).count,
          device: d.slots.device,
          config: configPath,
        },
        this.startAbort.signal,
      );
      // Neither uses an attempt; a yielding agent's slots go to the older gang meanwhile.
      if (formed.kind === 'expired')
        return { kind: 'delay', ms: cfg.lockDurationMs, reason: `no ${hosts} hosts with free slots in time` };
      if (formed.kind === 'yielded')
        return { kind: 'delay', ms: GANG_YIELD_DELAY_MS, reason: `gave way to the older gang ${formed.to}` };
      gang = formed.gang;
    }
    try {
      return await this.trainOn(d, plan, trial, configPath, gang);
    } finally {
      // The opening agent ends its gang: seat holders stop whatever still runs.
      if (gang) await cancelGang(this.ctx.redis, cfg.prefix, gang.id).catch(() => {});
    }
  }

  private async trainOn(
    d: TrainJobData,
    plan: TrainPlan,
    trial: TrialRow,
    configPath: string,
    gang: Gang | null,
  ): Promise<Outcome> {
    const attempt: AttemptPlan = { d, output: plan.output, number: trial.attempt + 1, configPath, gang };
    const early = await this.markRunning(attempt, trial);
    if (early) return early;
    const a = this.openAttempt(attempt, trial.bestMetric);
    const follower = this.follow(a);
    try {
      this.child = gang
        ? launchGangRanks(this.ctx.cfg, gang, 0, this.lease, this.ctx.log, a.protocolFile)
        : startChild({
            command: [...this.ctx.cfg.cli, 'train', '--config', configPath, '--json'],
            ranks: d.slots.count,
            lease: this.lease,
            log: this.ctx.log,
            protocolFile: a.protocolFile,
          });
    } catch (err) {
      a.events.close();
      await a.writer.close(this.lostAbort.signal);
      throw err;
    }
    const exit = await this.watch(a, follower, this.child);
    return this.conclude(a, exit.exitCode);
  }

  /** Trial RUNNING (attempt + 1); an outcome when the attempt must not start after all. */
  private async markRunning({ d, number: attempt }: AttemptPlan, trial: TrialRow): Promise<Outcome | null> {
    const { db } = this.ctx;
    await this.dbRetry(
      'mark trial RUNNING',
      () =>
        db.runs.updateTrial(d.trialId, {
          status: 'RUNNING',
          attempt,
          error: null,
          ...(trial.startedAt ? {} : { startedAt: new Date() }),
          ...(d.totalSteps !== null ? { totalSteps: d.totalSteps } : {}),
        }),
      this.startAbort.signal,
    );
    void this.markRunRunning(d.runId);
    if (this.stopReason?.kind === 'shutdown') {
      await this.dbRetry(
        'mark trial QUEUED',
        () => db.runs.updateTrial(d.trialId, { status: 'QUEUED' }),
        this.lostAbort.signal,
      );
      return { kind: 'release', reason: 'agent shutting down' };
    }
    if (this.stopReason) throw new AbortedError('start');
    return null;
  }

  /** The attempt's state, metric writer, TensorBoard log and progress reports, before its child starts. */
  private openAttempt(p: AttemptPlan, bestMetric: number | null): Attempt {
    const { cfg, db, log } = this.ctx;
    const { d } = p;
    const writer = new TrialWriter(db, d.trialId, {
      flushRows: cfg.metricFlushRows,
      flushMs: cfg.metricFlushMs,
      maxBackoffMs: cfg.dbRetryMaxMs,
      maxRows: cfg.metricBufferRows,
      log,
      onFatal: (err) => this.requestStop({ kind: 'db', reason: err.message }),
    });
    const events = new TrialEvents(p.output, log);
    events.hparams(
      { method: d.method, trialIndex: d.trialIndex, ...d.hyperparameters, training: d.training },
      d.runId,
    );
    const progress = new Coalescer<TrainProgress>(
      (p) => this.job.updateProgress(p),
      (err) => log.warn({ err: errorMessage(err) }, 'progress update failed'),
    );
    return {
      ...p,
      protocolFile: newProtocolFile(p.output, cfg.id),
      state: new TrialState(d.objective, d.asha, bestMetric),
      writer,
      events,
      progress,
    };
  }

  /** Reads the child's protocol file and handles each message in order, pausing while the writer is full. */
  private follow(a: Attempt): ProtocolFollower {
    const { log } = this.ctx;
    let paused = false;
    return new ProtocolFollower(
      a.protocolFile,
      (p) => {
        if (!p.ok) {
          log.warn({ line: p.line.slice(0, 300), reason: p.reason }, 'unreadable protocol line');
          return;
        }
        const msg = p.message;
        this.queued += 1;
        this.chain = this.chain
          .then(() => this.onMessage(msg, a))
          .catch((err) => log.error({ err }, 'handling a protocol message failed'))
          .finally(() => {
            this.queued -= 1;
          });
      },
      50,
      () => {
        const open = this.queued < MAX_QUEUED_MESSAGES && !a.writer.full;
        if (!open && !paused)
          log.warn(
            { bufferedRows: a.writer.pendingRows, queued: this.queued },
            'metric buffer full; the protocol file holds the backlog',
          );
        paused = !open;
        return open;
      },
    );
  }

  /** From launch to exit: the gang's peers watched, every protocol message handled, progress settled. */
  private async watch(a: Attempt, follower: ProtocolFollower, child: ChildHandle) {
    const { cfg, log } = this.ctx;
    const { gang } = a;
    log.info(
      {
        attempt: a.number,
        ranks: a.d.slots.count,
        slots: this.lease.ids,
        pids: child.pids,
        output: a.output,
        ...(gang ? { gang: gang.id, hosts: gang.hosts } : {}),
      },
      'trainer launched',
    );
    const unwatch = gang
      ? watchGang(this.ctx.redis, cfg, gang, 0, (reason) => this.requestStop({ kind: 'peer', reason }))
      : () => {};
    // A stop that came while the child was being started.
    this.signalChild();
    follower.start();
    const exit = await child.exited;
    unwatch();
    clearTimeout(this.killTimer);
    await follower.stop(this.lostAbort.signal);
    await this.chain;
    await a.progress.settle();
    return exit;
  }

  /** The trial's final row for this attempt and the job's outcome, from why the child exited. */
  private async conclude(a: Attempt, exitCode: number): Promise<Outcome> {
    const { log } = this.ctx;
    const { state, writer } = a;
    // Read through a method: TypeScript narrowed the field to null above, but stop() may have run since.
    const stop = this.currentStop();
    const completed = this.done !== null && !this.done.stopped && exitCode === 0;
    log.info(
      { exitCode, stop, step: state.step, completed, peakBufferedRows: writer.peakRows },
      'trainer exited',
    );
    if (stop?.kind === 'lost') {
      a.events.close();
      const { unwritten } = await writer.close(this.lostAbort.signal);
      if (unwritten)
        log.warn({ unwritten }, 'lock lost: leaving unwritten rows to the replay of the next attempt');
      return { kind: 'abandon', reason: 'lock lost' };
    }
    writer.setProgress({ currentStep: state.step, bestMetric: state.bestMetric });
    await writer.close();

    if (stop?.kind === 'db') {
      // Reported, not retried: the trial row shows why, the job fails for good.
      const message = this.errorLine ?? stop.reason;
      await this.finish(a, 'FAILED', { error: message }).catch((err) => {
        // The trial row itself may be gone (its run was deleted): the job's failure still says why.
        if (!isUnrecoverable(err)) throw err;
        log.warn({ err: errorMessage(err) }, 'could not mark the trial FAILED');
      });
      return { kind: 'fail', error: new Error(message), unrecoverable: true };
    }
    if (stop?.kind === 'cancel') {
      await this.finish(a, 'CANCELLED', { error: null });
      return { kind: 'complete', result: this.result(a, 'CANCELLED', { reason: 'run cancelled' }) };
    }
    if (stop?.kind === 'asha') {
      await this.finish(a, 'STOPPED', { stoppedAtRung: stop.rung, stopReason: stop.reason, error: null });
      return {
        kind: 'complete',
        result: this.result(a, 'STOPPED', { stoppedAtRung: stop.rung, reason: stop.reason }),
      };
    }
    if (completed) {
      await this.finish(a, 'SUCCEEDED', { error: null });
      return { kind: 'complete', result: this.result(a, 'SUCCEEDED') };
    }
    if (stop?.kind === 'shutdown') {
      // Back in the queue; the next agent resumes from the checkpoint just written.
      await this.finish(a, 'QUEUED');
      return { kind: 'release', reason: 'agent shutting down' };
    }
    if (a.gang && !stop && this.done?.stopped) {
      // Another host's agent shut down: its ranks were SIGTERMed, the trainer's stop flag (all-reduced
      // every step) stopped every rank after the same step, rank 0 checkpointed and printed a "done" line
      // with stopped: true (exit 130). No attempt used.
      await this.finish(a, 'QUEUED');
      return { kind: 'release', reason: 'another host of the trial shut down' };
    }
    return this.failed(a, exitCode);
  }

  /** The child exited without finishing and without being stopped: retried unless its exit code says the input is wrong. */
  private async failed(a: Attempt, exitCode: number): Promise<Outcome> {
    const tail = this.child?.stderrTail().slice(-10).join('\n') ?? '';
    const message =
      this.errorLine ??
      `trainer exited with code ${exitCode} without finishing${tail ? `; stderr:\n${tail}` : ''}`;
    const unrecoverable = isInvalidInputExit(exitCode);
    const retry = willRetry(this.job, unrecoverable);
    await this.finish(a, retry ? 'QUEUED' : 'FAILED', {
      error: retry ? `attempt ${a.number} failed (will retry): ${message}` : message,
    });
    return { kind: 'fail', error: new Error(message), unrecoverable };
  }

  /** The trial's row at the end of the attempt (and how it ended in its TensorBoard log). */
  private finish(a: Attempt, status: TrialStatus, extra: Record<string, unknown> = {}) {
    const { state } = a;
    a.events.end(status, state.step);
    a.events.close();
    return this.dbRetry(
      `mark trial ${status}`,
      () =>
        this.ctx.db.runs.updateTrial(a.d.trialId, {
          currentStep: state.step,
          bestMetric: state.bestMetric,
          ...(state.totalSteps !== null ? { totalSteps: state.totalSteps } : {}),
          status,
          ...(isTrialTerminal(status) ? { finishedAt: new Date() } : {}),
          ...extra,
        }),
      this.lostAbort.signal,
    );
  }

  /** The job's result: the step reached, the last checkpoint and the best metric. */
  private result(
    a: Attempt,
    status: TrainJobResult['status'],
    extra: Partial<TrainJobResult> = {},
  ): TrainJobResult {
    const checkpoint = this.done?.checkpoint ?? this.lastCheckpoint;
    return {
      status,
      step: a.state.step,
      checkpoint: checkpoint
        ? { step: checkpoint.step, path: checkpoint.path, bytes: checkpoint.bytes, sha256: checkpoint.sha256 }
        : null,
      bestMetric: a.state.bestMetric,
      ...extra,
    };
  }

  private async markRunRunning(runId: string): Promise<void> {
    try {
      const run = await this.ctx.db.runs.get(runId);
      if (run.status === 'PENDING') await this.ctx.db.runs.setStatus(runId, 'RUNNING');
    } catch (err) {
      this.ctx.log.warn({ err: errorMessage(err) }, 'could not mark the run RUNNING');
    }
  }

  private async onMessage(msg: TrainerMessage, a: Attempt): Promise<void> {
    const { d, state, writer, progress } = a;
    const due: RungDue[] = state.observe(msg);
    switch (msg.type) {
      case 'start': {
        this.ctx.log.info({ totalSteps: msg.totalSteps, resumedFrom: msg.resumedFrom }, 'trainer started');
        // Replayed rows first (a killed attempt may not have flushed its last ones), then the (re)start mark.
        if (msg.resumedFrom !== null) await this.resume(msg.resumedFrom, a);
        a.events.started(msg.resumedFrom);
        if (msg.totalSteps !== null) writer.setProgress({ totalSteps: msg.totalSteps });
        progress.push({ step: state.step, totalSteps: msg.totalSteps, loss: null, at: Date.now() });
        break;
      }
      case 'step':
        writer.addRows(metricRows(msg));
        a.events.rows(metricRows(msg));
        writer.setProgress({ currentStep: msg.step, bestMetric: state.bestMetric });
        progress.push({ step: msg.step, totalSteps: msg.totalSteps, loss: msg.loss, at: Date.now() });
        this.checkCancel(d.runId);
        break;
      case 'eval':
        writer.addRows(metricRows(msg));
        a.events.rows(metricRows(msg));
        writer.setProgress({ bestMetric: state.bestMetric });
        break;
      case 'checkpoint':
        this.lastCheckpoint = msg;
        writer.addCheckpoint({ step: msg.step, path: msg.path, bytes: msg.bytes, sha256: msg.sha256 });
        break;
      case 'done':
        this.done = msg;
        if (msg.checkpoint) writer.addCheckpoint({ ...msg.checkpoint });
        break;
      case 'error':
        this.errorLine = msg.message;
        break;
    }
    for (const r of due) await this.decideRung(d, r);
  }

  /**
   * The child resumed from `from`: write what earlier attempts recorded up to
   * there (their agent may have died before it reached Postgres), and repeat
   * the ASHA decisions of rungs already passed (a stop decided just before a
   * crash must still stop the trial).
   */
  private async resume(from: number, a: Attempt): Promise<void> {
    const { d, state, writer } = a;
    const replayed = await replayProtocol(a.output, from, a.protocolFile);
    const replayedRungs = new Map<number, number>();
    for (const m of replayed) {
      if (m.type === 'checkpoint') {
        writer.addCheckpoint({ step: m.step, path: m.path, bytes: m.bytes, sha256: m.sha256 });
        continue;
      }
      await writer.room(this.lostAbort.signal); // a long replay during an outage stays within the bound too
      writer.addRows(metricRows(m as Parameters<typeof metricRows>[0]));
      a.events.rows(metricRows(m as Parameters<typeof metricRows>[0]));
      for (const due of state.observe(m)) replayedRungs.set(due.rung, due.value);
    }
    for (const due of state.flushRungs()) replayedRungs.set(due.rung, due.value);
    state.step = from;
    this.ctx.log.info(
      { resumedFrom: from, replayed: replayed.length },
      'replayed earlier attempts up to the checkpoint',
    );
    if (!d.asha) return;
    for (const rung of state.rungsUpTo(from)) {
      state.markDecided(rung);
      const key = redisKeys(this.ctx.cfg.prefix).ashaRung(d.runId, rung);
      const recorded = (await this.ctx.redis.hexists(key, d.trialId)) === 1;
      const value = replayedRungs.get(rung);
      // A recorded result is decided again from the stored value (first write wins); an
      // unrecorded one (the agent died between the eval line and Redis) from the replay.
      if (recorded || value !== undefined) {
        await this.decideRung(d, { rung, step: d.asha.rungs[rung]!, value: value ?? Number.NaN });
      } else {
        this.ctx.log.warn(
          { rung },
          'resumed past an ASHA rung with no recorded or replayed result; continuing',
        );
      }
    }
  }

  private async decideRung(d: TrainJobData, r: RungDue): Promise<void> {
    const asha = d.asha;
    if (!asha || this.stopReason) return;
    const decision = await decideAtRung(this.ctx.redis, this.ctx.cfg.prefix, {
      runId: d.runId,
      trialId: d.trialId,
      rung: r.rung,
      step: r.step,
      value: r.value,
      mode: asha.mode,
      reductionFactor: asha.reductionFactor,
      metric: asha.metric,
    });
    this.ctx.log.info({ decision }, 'ASHA rung decision');
    if (decision.action === 'stop') this.requestStop({ kind: 'asha', rung: r.rung, reason: decision.reason });
  }

  /** One EXISTS per step, never more than one in flight (steps can be faster than a round trip). */
  private checkCancel(runId: string): void {
    if (this.cancelCheck || this.stopReason) return;
    this.cancelCheck = isCancelled(this.ctx.redis, this.ctx.cfg.prefix, runId)
      .then((cancelled) => {
        if (cancelled) this.requestStop({ kind: 'cancel' });
      })
      .catch((err) => this.ctx.log.warn({ err: errorMessage(err) }, 'cancel check failed'))
      .finally(() => {
        this.cancelCheck = null;
      });
  }
}
