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
  event(obj: Record<string, unknown> & { type: string }): void;
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
