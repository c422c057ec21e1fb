// A trial's TensorBoard log (tensorboard.ts) as the worker keeps it: under
// <artifactRoot>/<runId>/<trialId>/tensorboard/, so `tensorboard --logdir
// <artifactRoot>/<runId>` shows every trial of a sweep as a run. The train job
// writes the hyperparameters, a scalar per metric row and how the trial
// ended; the eval job adds the RG/ASR of the final weights to the same run
// directory, where the hparams dashboard finds them as the trial's metrics.
// TensorBoard logs are a convenience beside Postgres: a failing disk is
// logged once and the trial goes on.

import { join } from 'node:path';
import { isTrialWithResult, type MetricRow } from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import type { Logger } from './log.js';
import { EventWriter, flattenHParams, type SessionStatus } from './tensorboard.js';

export const TENSORBOARD_DIR = 'tensorboard';

/** TensorBoard tag of a metric row: `name`, or `name/lang` for a per-language value. */
export const tagOf = (r: Pick<MetricRow, 'name' | 'language'>) =>
  r.language ? `${r.name}/${r.language}` : r.name;

export function scalarsOf(rows: readonly MetricRow[]): Map<number, Record<string, number>> {
  const byStep = new Map<number, Record<string, number>>();
  for (const r of rows) {
    const values = byStep.get(r.step) ?? {};
    values[tagOf(r)] = r.value;
    byStep.set(r.step, values);
  }
  return byStep;
}

/** How a trial's status shows in the hparams dashboard (null: still running, or handed back). */
export function sessionStatusOf(status: string): SessionStatus | null {
  if (isTrialWithResult(status)) return 'SUCCESS'; // ASHA's stop is a normal end
  if (status === 'FAILED') return 'FAILURE';
  if (status === 'CANCELLED') return 'UNKNOWN';
  return null;
}

export class TrialEvents {
  private writer: EventWriter | null = null;

  constructor(
    trialDir: string,
    private readonly log: Logger,
    suffix?: string,
  ) {
    try {
      this.writer = new EventWriter(join(trialDir, TENSORBOARD_DIR), suffix ? { suffix } : {});
    } catch (err) {
      this.failed(err);
    }
  }

  /** The trial's hyperparameters; trials of one run share `group` (the run id). */
  hparams(params: Record<string, unknown>, group: string): void {
    this.guard((w) => w.hparams(flattenHParams(params), group));
  }

  /**
   * The trainer started: `from` null for a fresh start, else the checkpoint
   * step it resumed from. TensorBoard (plugin_event_accumulator) takes a run's
   * first SessionLog START as its start and every later one as a restart that
   * drops what was recorded at steps >= its step; the steps after `from` are
   * trained again, hence a START at from + 1.
   */
  started(from: number | null): void {
    this.guard((w) => w.sessionStart(from === null ? 0 : from + 1));
  }

  rows(rows: readonly MetricRow[]): void {
    this.guard((w) => {
      for (const [step, values] of scalarsOf(rows)) w.scalars(step, values);
    });
  }

  end(status: string, step: number): void {
    const s = sessionStatusOf(status);
    this.guard((w) => {
      if (s) w.sessionEnd(s, step);
      w.flush();
    });
  }

  close(): void {
    this.guard((w) => w.close());
    this.writer = null;
  }

  private guard(fn: (w: EventWriter) => void): void {
    if (this.writer === null) return;
    try {
      fn(this.writer);
    } catch (err) {
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    this.log.warn({ err: errorMessage(err) }, 'writing the TensorBoard log failed; it stops here');
    this.writer = null;
  }
}
