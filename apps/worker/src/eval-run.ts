// One eval job: evaluate a trial's final weights with
// `mpo eval --config FILE --json`, which prints one line per result (the
// protocol of packages/queue/src/eval-protocol.ts). The results become
// Evaluation rows, written once at the end (a retried job writes none twice).
// The generations behind the attack-success rates (`--save-responses`: prompt,
// response, language, verdict) stay as <trial>/eval/generations.jsonl and
// become Generation rows, replacing an earlier attempt's. Trials that did not
// finish (stopped by ASHA, cancelled, failed) are skipped.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { NewEvaluation } from '@mpo/db';
import { readGenerations } from '@mpo/eval';
import {
  type EvalJobData,
  type EvalJobResult,
  type EvalResultLine,
  isInvalidInputExit,
  isTrialEvaluated,
  parseEvalLine,
  TRIAL_TERMINAL_STATUSES,
} from '@mpo/queue';
import { BUILTIN_DATA } from '@mpo/trainer';
import { writeFileWhole } from '@mpo/util';
import type { Job } from 'bullmq';
import { type ChildHandle, startChild } from './child.js';
import type { SlotLease } from './devices.js';
import { isUnrecoverable, type Outcome, willRetry } from './outcome.js';
import { AbortedError, retrying, withTimeout } from './retry.js';
import { evalJob } from './run-specs.js';
import type { RunContext } from './train-run.js';
import { confined, guessDataFormat, trialDir } from './trainer-config.js';
import { TrialEvents } from './trial-events.js';

/** The eval job's generations artifact, in the trial's eval folder. */
export const GENERATIONS_FILE = 'generations.jsonl';

/** Statuses whose weights are not the trial's final ones. */
const NOT_EVALUATED = new Set<string>(TRIAL_TERMINAL_STATUSES.filter((s) => !isTrialEvaluated(s)));

export class EvalRun {
  private child: ChildHandle | null = null;
  private stopped: 'shutdown' | 'lost' | null = null;
  private readonly abort = new AbortController();

  constructor(
    private readonly ctx: RunContext,
    private readonly job: Job,
    private readonly lease: SlotLease,
  ) {}

  stop(kind: 'shutdown' | 'lost'): void {
    this.stopped ??= kind;
    if (kind === 'lost') this.stopped = 'lost';
    this.abort.abort();
    // An evaluation has no checkpoint to resume from: stop it now, it starts over elsewhere.
    this.child?.signal(kind === 'lost' ? 'SIGKILL' : 'SIGTERM');
  }

  async run(): Promise<Outcome> {
    try {
      return await this.runInner();
    } catch (err) {
      if (err instanceof AbortedError || this.stopped) {
        return this.stopped === 'lost'
          ? { kind: 'abandon', reason: 'lock lost' }
          : { kind: 'release', reason: 'agent shutting down' };
      }
      return { kind: 'fail', error: err as Error, unrecoverable: isUnrecoverable(err) };
    }
  }

  private retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retrying(() => withTimeout(fn(), 30_000, what), {
      what,
      log: this.ctx.log,
      maxMs: this.ctx.cfg.dbRetryMaxMs,
      signal: this.abort.signal,
      fatal: isUnrecoverable,
    });
  }

  private async runInner(): Promise<Outcome> {
    // Long: one eval job from payload to stored rows, each step a guard or a named helper, in the order they run.
    const { cfg, db, log } = this.ctx;
    const d = await evalJob(this.job.data, (runId) =>
      this.retry('read the run spec', () => this.ctx.specs.get(runId)),
    );
    const trial = await this.retry('read trial', () => db.runs.trial(d.trialId));
    if (NOT_EVALUATED.has(trial.status)) return skipped(`trial is ${trial.status}`);
    const dir = trialDir(cfg.artifactRoot, d.runId, d.trialId);
    const finalDir = join(dir, 'final');
    const latest = await this.retry('read checkpoints', () => db.artifacts.latestCheckpoint(d.trialId));
    const weights = existsSync(join(finalDir, 'config.json')) ? finalDir : latest?.path;
    if (!weights) return skipped('the trial has no final weights or checkpoint');

    const outDir = join(dir, 'eval');
    mkdirSync(outDir, { recursive: true });
    const configPath = join(outDir, 'eval-config.json');
    const config = evalConfig(d, weights, cfg);
    writeFileWhole(configPath, `${JSON.stringify(config, null, 2)}\n`);

    const results: EvalResultLine[] = [];
    let errorLine: string | null = null;
    const generationsPath = join(outDir, GENERATIONS_FILE);
    rmSync(generationsPath, { force: true });
    this.child = startChild({
      command: [...cfg.cli, 'eval', '--config', configPath, '--json', '--save-responses', generationsPath],
      ranks: 1,
      judge: true,
      lease: this.lease,
      log,
      onStdoutLine: (line) => {
        const p = parseEvalLine(line);
        if (!p || p.kind === 'other') return;
        if (p.kind === 'result') results.push(p.result);
        else if (p.kind === 'error') errorLine = p.message;
        else log.warn({ line: line.slice(0, 300), reason: p.reason }, 'unreadable eval line');
      },
    });
    log.info({ weights, benchmarks: d.benchmarks, languages: d.languages }, 'starting evaluation');
    if (this.stopped) this.child.signal('SIGTERM');
    const exit = await this.child.exited;
    if (this.stopped) throw new AbortedError('eval');
    if (exit.exitCode !== 0) {
      const tail = this.child.stderrTail();
      const message =
        errorLine ?? `mpo eval exited with code ${exit.exitCode}; stderr:\n${tail.slice(-10).join('\n')}`;
      const unrecoverable = isInvalidInputExit(exit.exitCode);
      log.warn(
        { exitCode: exit.exitCode, willRetry: willRetry(this.job, unrecoverable) },
        'evaluation failed',
      );
      return { kind: 'fail', error: new Error(message), unrecoverable };
    }

    // The final weights are those of the last checkpoint (the trainer checkpoints its last step).
    const checkpointId = latest?.id ?? null;
    const written = await this.retry('record evaluations', async () => {
      // Skip rows an earlier attempt of this job already wrote (it may have died before completing).
      const existing = await db.artifacts.evaluations({ trialId: d.trialId });
      const seen = new Set(existing.map((e) => `${e.checkpointId}|${e.benchmark}|${e.language}|${e.metric}`));
      const rows: NewEvaluation[] = results
        .map((r) => ({ trialId: d.trialId, checkpointId, ...r }))
        .filter((r) => !seen.has(`${r.checkpointId}|${r.benchmark}|${r.language}|${r.metric}`));
      if (rows.length) await db.artifacts.recordEvaluations(rows);
      return rows.length;
    });
    // Generation benchmarks write the file; a reward-gap-only evaluation has no generations.
    const generations = existsSync(generationsPath) ? readGenerations(generationsPath) : [];
    const stored = await this.retry('record generations', () =>
      db.generations.replace({ trialId: d.trialId, checkpointId }, generations),
    );
    log.info({ results: results.length, written, generations: stored }, 'evaluation recorded');
    // The final RG/ASR beside the training curves, where the hparams dashboard finds them.
    const events = new TrialEvents(dir, log, 'eval');
    events.rows(
      results.map((r) => ({
        step: trial.currentStep,
        name: `eval/${r.benchmark}/${r.metric}`,
        language: r.language,
        value: r.value,
      })),
    );
    events.close();
    const result: EvalJobResult = { status: 'EVALUATED', evaluations: results.length };
    return { kind: 'complete', result };
  }
}

function skipped(reason: string): Outcome {
  const result: EvalJobResult = { status: 'SKIPPED', evaluations: 0, reason };
  return { kind: 'complete', result };
}

/**
 * The config handed to `mpo eval --config` (packages/eval parseEvalConfig):
 * the trained weights, the run's benchmarks, languages and judge. The reward
 * gap reads MPO-format data: the run's own when it is MPO JSON, else the
 * CLI's default. Paths are confined to the roots again.
 */
/** The evaluator's own default cutoff (packages/eval parseEvalConfig), the least room generation benchmarks get. */
export const EVAL_MIN_CUTOFF = 512;

export function evalConfig(
  d: EvalJobData,
  weights: string,
  roots: { dataRoot: string },
): Record<string, unknown> {
  const ref = d.data[0];
  let data: string | undefined;
  if (ref?.kind === 'builtin') {
    const id = `builtin:${ref.id}`;
    if ((ref.format ?? BUILTIN_DATA[id]?.format) === 'mpo') data = id;
  } else if (ref) {
    const path = confined(roots.dataRoot, ref.path, 'data');
    if ((ref.format ?? guessDataFormat(path)) === 'mpo') data = path;
  }
  return {
    model: weights,
    benchmarks: d.benchmarks,
    languages: d.languages,
    maxPrompts: d.maxPrompts,
    judge: d.judge,
    // One cutoff for the reward gap: the training's, which the sweep's held-out
    // metric (the trainer's evaluation) also used, so a trial's search metric and
    // its evaluated reward gap are the same quantity (at 192 vs 512 tokens the
    // same trial read +0.060 and −0.009). Generation benchmarks and utility keep
    // room for prompt + answer (benchmarkCutoff); the report states both.
    cutoff: d.cutoff,
    benchmarkCutoff: Math.max(EVAL_MIN_CUTOFF, d.cutoff),
    device: d.slots.device === 'cpu' ? 'cpu' : 'cuda:0',
    threads: 1,
    ...(data ? { data: { path: data } } : {}),
  };
}
