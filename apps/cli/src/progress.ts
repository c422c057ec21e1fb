// Progress output: a single redrawn line on a terminal, JSON lines otherwise
// (so a parent process — the worker agent — can parse it).

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(r).padStart(2, '0')}s`
      : `${r}s`;
}

export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

/** ETA from the mean time of the steps seen so far. */
export class Eta {
  private readonly start = performance.now();
  private readonly startStep: number;
  constructor(startStep: number) {
    this.startStep = startStep;
  }
  seconds(step: number, total: number): number {
    const done = step - this.startStep;
    if (done <= 0) return Number.NaN;
    const per = (performance.now() - this.start) / 1000 / done;
    return per * (total - step);
  }
}

export interface Reporter {
  /** True when drawing a progress line on a terminal (events are then not printed). */
  readonly tty: boolean;
  /** Any JSON object with a type; train and eval pass their protocols' messages (@mpo/queue). */
  event<T extends { type: string }>(obj: T): void;
  line(text: string): void;
  done(): void;
}

export function createReporter(json: boolean, stream: NodeJS.WriteStream = process.stdout): Reporter {
  const tty = !json && stream.isTTY === true;
  let drawn = false;
  return {
    tty,
    event(obj) {
      if (!tty) stream.write(`${JSON.stringify(obj)}\n`);
    },
    line(text) {
      if (tty) {
        stream.write(`\r\x1b[2K${text}`);
        drawn = true;
      }
    },
    done() {
      if (tty && drawn) stream.write('\n');
    },
  };
}

export interface ProgressOptions {
  /** What is being counted, shown before the bar and sent as `phase`. */
  label: string;
  total: number;
  /** Unit of the rate ("it/s" by default: items per second). */
  unit?: string;
  /** JSON lines even on a terminal (the command's --json). */
  json?: boolean;
  stream?: NodeJS.WriteStream;
  /** JSON lines at most this often (the first and the last always go out); default 1 s. */
  everyMs?: number;
  /**
   * The count may already be above 0 when watching begins (work that ran before the command looked): the rate,
   * and so the ETA, count from the first update of each stage instead of from 0 at its start.
   */
  rateFromFirstUpdate?: boolean;
  now?: () => number;
}

export interface Progress {
  /** `done` of `total` finished (absolute, not an increment); `note` follows the bar on a terminal. */
  update(done: number, note?: string): void;
  /** A new stage with its own total; rate and ETA start again. */
  phase(label: string, total: number): void;
  /**
   * The same stage has more (or less) to do than it knew: the total changes, `done`, the rate and the pacing of
   * JSON lines do not (a sweep learns each trial's step count as the trial starts).
   */
  setTotal(total: number): void;
  /** Ends the bar line (a terminal) or sends the last JSON line. */
  finish(): void;
}

/**
 * Progress of a long command on stderr, so stdout keeps only results: on a
 * terminal a redrawn bar with rate and ETA, otherwise (or with --json) JSON
 * lines `{"type":"progress","phase","done","total","rate","etaSeconds"}`.
 * Reused by eval, score, testbed build and reproduce.
 */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = !opts.json && stream.isTTY === true;
  const now = opts.now ?? (() => performance.now());
  const every = opts.everyMs ?? 1_000;
  const unit = opts.unit ?? 'it/s';
  let label = opts.label;
  let total = opts.total;
  let done = 0;
  let lastSent = Number.NEGATIVE_INFINITY;
  let drawn = false;

  // Where the rate counts from: 0 at the stage's start, or the stage's first update (rateFromFirstUpdate).
  const stageOrigin = () => (opts.rateFromFirstUpdate ? null : { done: 0, t: now() });
  let origin: { done: number; t: number } | null = stageOrigin();
  const state = () => {
    const from = origin ?? { done, t: now() };
    const secs = (now() - from.t) / 1000;
    const rate = secs > 0 ? (done - from.done) / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : Number.NaN;
    return { rate, eta };
  };
  const emit = (force: boolean, note = '') => {
    const { rate, eta } = state();
    if (tty) {
      const frac = total > 0 ? done / total : 1;
      stream.write(
        `\r\x1b[2K${label} ${bar(frac)} ${done}/${total} ${rate.toFixed(rate < 10 ? 2 : 0)} ${unit} ETA ${formatDuration(eta)}${note ? `  ${note}` : ''}`,
      );
      drawn = true;
      return;
    }
    const t = now();
    if (!force && t - lastSent < every) return;
    lastSent = t;
    stream.write(
      `${JSON.stringify({
        type: 'progress',
        phase: label,
        done,
        total,
        rate: Number(rate.toPrecision(4)),
        etaSeconds: Number.isFinite(eta) ? Math.round(eta) : null,
      })}\n`,
    );
  };
  return {
    update(n, note) {
      done = n;
      origin ??= { done: n, t: now() };
      emit(n === 0 || n >= total, note);
    },
    phase(next, nextTotal) {
      if (drawn) stream.write('\n');
      drawn = false;
      label = next;
      total = nextTotal;
      done = 0;
      origin = stageOrigin();
      lastSent = Number.NEGATIVE_INFINITY;
      emit(true);
    },
    setTotal(n) {
      total = n;
    },
    finish() {
      if (tty && drawn) stream.write('\n');
      drawn = false;
    },
  };
}
