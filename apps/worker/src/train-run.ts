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
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Db, TrialStatus } from '@mpo/db';
import {
  cancelGang,
  decideAtRung,
  type Gang,
  hostsOf,
  isCancelled,
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

/** CLI exit codes (apps/cli exit-codes.ts) that mean the input is wrong: retrying cannot help. */
const INVALID_INPUT_CODES = new Set([2, 3, 4]);

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
  /** The trial's TensorBoard log (trial-events.ts), open while the child runs. */
  private events: TrialEvents | null = null;

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

  private async cancelledBeforeStart(
    d: TrainJobData,
    trial: Awaited<ReturnType<Db['runs']['trial']>>,
  ): Promise<Outcome> {
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

  private async train(
    d: TrainJobData,
    plan: ReturnType<typeof buildTrainConfig>,
    trial: Awaited<ReturnType<Db['runs']['trial']>>,
  ): Promise<Outcome> {
    const { cfg } = this.ctx;
    const configPath = join(plan.output, 'train-config.json');
    const tmp = `${configPath}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(plan.config, null, 2)}\n`);
    renameSync(tmp, configPath);

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
    plan: ReturnType<typeof buildTrainConfig>,
    trial: Awaited<ReturnType<Db['runs']['trial']>>,
    configPath: string,
    gang: Gang | null,
  ): Promise<Outcome> {
    const { cfg, db, log } = this.ctx;
    const attempt = trial.attempt + 1;
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

    const state = new TrialState(d.objective, d.asha, trial.bestMetric);
    const protocolFile = newProtocolFile(plan.output, cfg.id);
    const writer = new TrialWriter(db, d.trialId, {
      flushRows: cfg.metricFlushRows,
      flushMs: cfg.metricFlushMs,
      maxBackoffMs: cfg.dbRetryMaxMs,
      maxRows: cfg.metricBufferRows,
      log,
      onFatal: (err) => this.requestStop({ kind: 'db', reason: err.message }),
    });
    this.events = new TrialEvents(plan.output, log);
    this.events.hparams(
      { method: d.method, trialIndex: d.trialIndex, ...d.hyperparameters, training: d.training },
      d.runId,
    );
    const progress = new Coalescer<TrainProgress>(
      (p) => this.job.updateProgress(p),
      (err) => log.warn({ err: (err as Error).message }, 'progress update failed'),
    );
    let paused = false;
    const follower = new ProtocolFollower(
      protocolFile,
      (p) => {
        if (!p.ok) {
          log.warn({ line: p.line.slice(0, 300), reason: p.reason }, 'unreadable protocol line');
          return;
        }
        const msg = p.message;
        this.queued += 1;
        this.chain = this.chain
          .then(() => this.onMessage(msg, d, plan.output, protocolFile, state, writer, progress))
          .catch((err) => log.error({ err }, 'handling a protocol message failed'))
          .finally(() => {
            this.queued -= 1;
          });
      },
      50,
      () => {
        const open = this.queued < MAX_QUEUED_MESSAGES && !writer.full;
        if (!open && !paused)
          log.warn(
            { bufferedRows: writer.pendingRows, queued: this.queued },
            'metric buffer full; the protocol file holds the backlog',
          );
        paused = !open;
        return open;
      },
    );

    try {
      this.child = gang
        ? launchGangRanks(cfg, gang, 0, this.lease, log, protocolFile)
        : startChild({
            command: [...cfg.cli, 'train', '--config', configPath, '--json'],
            ranks: d.slots.count,
            lease: this.lease,
            log,
            protocolFile,
          });
    } catch (err) {
      this.events.close();
      await writer.close(this.lostAbort.signal);
      throw err;
    }
    log.info(
      {
        attempt,
        ranks: d.slots.count,
        slots: this.lease.ids,
        pids: this.child.pids,
        output: plan.output,
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
    const exit = await this.child.exited;
    unwatch();
    clearTimeout(this.killTimer);
    await follower.stop(this.lostAbort.signal);
    await this.chain;
    await progress.settle();

    // Read through a method: TypeScript narrowed the field to null above, but stop() may have run since.
    const stop = this.currentStop();
    const completed = this.done !== null && !this.done.stopped && exit.exitCode === 0;
    log.info(
      { exitCode: exit.exitCode, stop, step: state.step, completed, peakBufferedRows: writer.peakRows },
      'trainer exited',
    );

    const events = this.events;
    if (stop?.kind === 'lost') {
      events.close();
      const { unwritten } = await writer.close(this.lostAbort.signal);
      if (unwritten)
        log.warn({ unwritten }, 'lock lost: leaving unwritten rows to the replay of the next attempt');
      return { kind: 'abandon', reason: 'lock lost' };
    }
    writer.setProgress({ currentStep: state.step, bestMetric: state.bestMetric });
    await writer.close();
    const base = {
      currentStep: state.step,
      bestMetric: state.bestMetric,
      ...(state.totalSteps !== null ? { totalSteps: state.totalSteps } : {}),
    };
    const checkpoint = this.done?.checkpoint ?? this.lastCheckpoint;
    const result = (
      status: TrainJobResult['status'],
      extra: Partial<TrainJobResult> = {},
    ): TrainJobResult => ({
      status,
      step: state.step,
      checkpoint: checkpoint
        ? { step: checkpoint.step, path: checkpoint.path, bytes: checkpoint.bytes, sha256: checkpoint.sha256 }
        : null,
      bestMetric: state.bestMetric,
      ...extra,
    });
    const finish = async (status: TrialStatus, extra: Record<string, unknown> = {}) => {
      events.end(status, state.step);
      events.close();
      return this.dbRetry(
        `mark trial ${status}`,
        () =>
          db.runs.updateTrial(d.trialId, {
            ...base,
            status,
            ...(isTrialTerminal(status) ? { finishedAt: new Date() } : {}),
            ...extra,
          }),
        this.lostAbort.signal,
      );
    };

    if (stop?.kind === 'db') {
      // Reported, not retried: the trial row shows why, the job fails for good.
      const message = this.errorLine ?? stop.reason;
      await finish('FAILED', { error: message }).catch((err) => {
        // The trial row itself may be gone (its run was deleted): the job's failure still says why.
        if (!isUnrecoverable(err)) throw err;
        log.warn({ err: (err as Error).message }, 'could not mark the trial FAILED');
      });
      return { kind: 'fail', error: new Error(message), unrecoverable: true };
    }
    if (stop?.kind === 'cancel') {
      await finish('CANCELLED', { error: null });
      return { kind: 'complete', result: result('CANCELLED', { reason: 'run cancelled' }) };
    }
    if (stop?.kind === 'asha') {
      await finish('STOPPED', { stoppedAtRung: stop.rung, stopReason: stop.reason, error: null });
      return {
        kind: 'complete',
        result: result('STOPPED', { stoppedAtRung: stop.rung, reason: stop.reason }),
      };
    }
    if (completed) {
      await finish('SUCCEEDED', { error: null });
      return { kind: 'complete', result: result('SUCCEEDED') };
    }
    if (stop?.kind === 'shutdown') {
      // Back in the queue; the next agent resumes from the checkpoint just written.
      await finish('QUEUED');
      return { kind: 'release', reason: 'agent shutting down' };
    }
    if (gang && !stop && this.done?.stopped) {
      // Another host's agent shut down: its ranks were SIGTERMed, the trainer's stop flag (all-reduced
      // every step) stopped every rank after the same step, rank 0 checkpointed and printed a "done" line
      // with stopped: true (exit 130). No attempt used.
      await finish('QUEUED');
      return { kind: 'release', reason: 'another host of the trial shut down' };
    }
    const tail = this.child.stderrTail().slice(-10).join('\n');
    const message =
      this.errorLine ??
      `trainer exited with code ${exit.exitCode} without finishing${tail ? `; stderr:\n${tail}` : ''}`;
    const unrecoverable = INVALID_INPUT_CODES.has(exit.exitCode);
    const retry = willRetry(this.job, unrecoverable);
    await finish(retry ? 'QUEUED' : 'FAILED', {
      error: retry ? `attempt ${attempt} failed (will retry): ${message}` : message,
    });
    return { kind: 'fail', error: new Error(message), unrecoverable };
  }

  private async markRunRunning(runId: string): Promise<void> {
    try {
      const run = await this.ctx.db.runs.get(runId);
      if (run.status === 'PENDING') await this.ctx.db.runs.setStatus(runId, 'RUNNING');
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message }, 'could not mark the run RUNNING');
    }
  }

  private async onMessage(
    msg: TrainerMessage,
    d: TrainJobData,
    output: string,
    protocolFile: string,
    state: TrialState,
    writer: TrialWriter,
    progress: Coalescer<TrainProgress>,
  ): Promise<void> {
    const due: RungDue[] = state.observe(msg);
    switch (msg.type) {
      case 'start': {
        this.ctx.log.info({ totalSteps: msg.totalSteps, resumedFrom: msg.resumedFrom }, 'trainer started');
        // Replayed rows first (a killed attempt may not have flushed its last ones), then the (re)start mark.
        if (msg.resumedFrom !== null)
          await this.resume(msg.resumedFrom, d, output, protocolFile, state, writer);
        this.events?.started(msg.resumedFrom);
        if (msg.totalSteps !== null) writer.setProgress({ totalSteps: msg.totalSteps });
        progress.push({ step: state.step, totalSteps: msg.totalSteps, loss: null, at: Date.now() });
        break;
      }
      case 'step':
        writer.addRows(metricRows(msg));
        this.events?.rows(metricRows(msg));
        writer.setProgress({ currentStep: msg.step, bestMetric: state.bestMetric });
        progress.push({ step: msg.step, totalSteps: msg.totalSteps, loss: msg.loss, at: Date.now() });
        this.checkCancel(d.runId);
        break;
      case 'eval':
        writer.addRows(metricRows(msg));
        this.events?.rows(metricRows(msg));
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
  private async resume(
    from: number,
    d: TrainJobData,
    output: string,
    protocolFile: string,
    state: TrialState,
    writer: TrialWriter,
  ): Promise<void> {
    const replayed = await replayProtocol(output, from, protocolFile);
    const replayedRungs = new Map<number, number>();
    for (const m of replayed) {
      if (m.type === 'checkpoint') {
        writer.addCheckpoint({ step: m.step, path: m.path, bytes: m.bytes, sha256: m.sha256 });
        continue;
      }
      await writer.room(this.lostAbort.signal); // a long replay during an outage stays within the bound too
      writer.addRows(metricRows(m as Parameters<typeof metricRows>[0]));
      this.events?.rows(metricRows(m as Parameters<typeof metricRows>[0]));
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
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, 'cancel check failed'))
      .finally(() => {
        this.cancelCheck = null;
      });
  }
}
