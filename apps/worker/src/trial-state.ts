// What the agent tracks about a training trial from its protocol messages:
// the last step and loss, the best value of the sweep's objective metric,
// and which ASHA rungs are due a decision. Pure bookkeeping, no I/O.
import {
  type AshaJob,
  metricValue,
  type TrainerEval,
  type TrainerMessage,
  type TrainerStep,
} from '@mpo/queue';

type Metrics = TrainerStep['metrics'];

export interface RungDue {
  /** Rung index k (asha.rungs[k] is its step). */
  rung: number;
  step: number;
  value: number;
}

export class TrialState {
  step = 0;
  totalSteps: number | null = null;
  loss: number | null = null;
  bestMetric: number | null;
  private readonly rungSteps: number[];
  /** Step-line metrics at rung steps, kept until the rung is decided (fallback when no eval line comes). */
  private readonly atRung = new Map<number, Metrics>();
  private readonly decided = new Set<number>();

  constructor(
    private readonly objective: { metric: string; mode: 'min' | 'max' },
    private readonly asha: AshaJob | undefined,
    initialBest: number | null = null,
  ) {
    this.bestMetric = initialBest;
    this.rungSteps = asha?.rungs ?? [];
  }

  /** Step metrics with the loss, so "loss" can be the objective or a rung metric. */
  private static stepMetrics(m: TrainerStep): Metrics {
    return { loss: m.loss, ...m.metrics };
  }

  private observeBest(metrics: Metrics): void {
    const v = metricValue(metrics, this.objective.metric);
    if (v === undefined || !Number.isFinite(v)) return;
    if (
      this.bestMetric === null ||
      (this.objective.mode === 'max' ? v > this.bestMetric : v < this.bestMetric)
    ) {
      this.bestMetric = v;
    }
  }

  /** Marks rungs at or below `step` as already decided (a resumed trial re-checks them separately). */
  markDecided(rung: number): void {
    this.decided.add(rung);
    this.atRung.delete(this.rungSteps[rung] ?? -1);
  }

  rungsUpTo(step: number): number[] {
    return this.rungSteps.flatMap((s, k) => (s <= step ? [k] : []));
  }

  /**
   * Takes one message; returns the ASHA rungs that are now due a decision.
   * A rung is decided on the held-out `eval` line at its step; when the
   * child evaluates nothing there, on the next step line, from the rung
   * step's own metrics.
   */
  observe(msg: TrainerMessage): RungDue[] {
    const due: RungDue[] = [];
    if (msg.type === 'start') {
      this.totalSteps = msg.totalSteps;
      if (msg.resumedFrom !== null) this.step = msg.resumedFrom;
    } else if (msg.type === 'step') {
      const metrics = TrialState.stepMetrics(msg);
      this.step = msg.step;
      this.totalSteps = msg.totalSteps ?? this.totalSteps;
      this.loss = msg.loss;
      this.observeBest(metrics);
      for (const [step, m] of this.atRung) {
        if (step < msg.step) due.push(...this.decide(step, m));
      }
      if (this.rungSteps.includes(msg.step) && !this.decided.has(this.rungSteps.indexOf(msg.step)))
        this.atRung.set(msg.step, metrics);
    } else if (msg.type === 'eval') {
      this.observeBest(msg.metrics);
      if (this.rungSteps.includes(msg.step)) {
        due.push(...this.decide(msg.step, { ...(this.atRung.get(msg.step) ?? {}), ...msg.metrics }));
      }
    }
    return due;
  }

  /** Rungs still waiting for their eval line when the child is gone: decide them on step metrics. */
  flushRungs(): RungDue[] {
    return [...this.atRung].flatMap(([step, m]) => this.decide(step, m));
  }

  private decide(step: number, metrics: Metrics | TrainerEval['metrics']): RungDue[] {
    const rung = this.rungSteps.indexOf(step);
    if (rung < 0 || this.decided.has(rung) || !this.asha) return [];
    this.markDecided(rung);
    // A missing metric ranks like NaN (last): a rung cannot promote what it cannot measure.
    const value = metricValue(metrics, this.asha.metric) ?? Number.NaN;
    return [{ rung, step, value }];
  }
}
