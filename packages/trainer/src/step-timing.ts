// Where one optimizer step's wall time goes, phase by phase, for the step
// record's `timing` (seconds) and the trainer benchmark's breakdown.

export const STEP_PHASES = [
  'data',
  'forward',
  'objective',
  'backward',
  'accumulate',
  'allreduce',
  'optimizer',
] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

export class StepTiming {
  private readonly ms = Object.fromEntries(STEP_PHASES.map((p) => [p, 0])) as Record<StepPhase, number>;
  private readonly startedAt = performance.now();

  /** Runs `f`, adding its wall time to `phase`. */
  async time<T>(phase: StepPhase, f: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.ms[phase] += performance.now() - t0;
    }
  }

  /** Adds `ms` milliseconds, measured by the caller, to `phase`. */
  add(phase: StepPhase, ms: number): void {
    this.ms[phase] += ms;
  }

  /** Seconds since this step began. */
  elapsed(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  /** Seconds per phase. */
  seconds(): Record<StepPhase, number> {
    return Object.fromEntries(STEP_PHASES.map((p) => [p, this.ms[p] / 1000])) as Record<StepPhase, number>;
  }
}
