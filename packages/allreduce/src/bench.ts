import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { errorMessage } from '@mpo/util';
import { freeLoopbackPort } from './bench-gloo.js';
import type { Transport } from './group.js';
import { parseCoreList } from './group.js';
import { launchRanks } from './launch.js';
import { packageRoot } from './native.js';

/** 4 KiB .. 256 MiB in steps of 4x. */
export const DEFAULT_BENCH_SIZES: number[] = Array.from({ length: 9 }, (_, i) => 4096 * 4 ** i);

export interface BenchOptions {
  ranks?: number;
  /** Message sizes in bytes (default 4 KiB .. 256 MiB). */
  sizes?: number[];
  /** Iterations per trial (default: from the size, 5..2000). */
  iters?: number;
  /** Trials per size; the per-rank time is the median (default 5). */
  trials?: number;
  /** Print one JSON object per size (else a table). */
  json?: boolean;
  transport?: Transport;
  /** shm (ours, default) or gloo (libtorch's ProcessGroupGloo over loopback, for comparison). */
  backend?: 'shm' | 'gloo';
  cores?: number[];
  timeoutMs?: number;
  /** Where results are printed (default process.stdout); null prints nothing. */
  out?: NodeJS.WritableStream | null;
}

export interface BenchResult {
  bytes: number;
  /** Time of one all-reduce, µs. */
  timeUs: number;
  /** bytes / time, GB/s (1e9). */
  algbwGBps: number;
  /** algbw * 2(n-1)/n, GB/s. */
  busbwGBps: number;
  /** Single-thread memcpy of the same size on rank 0's core, measured in the same run, GB/s. */
  memcpyGBps: number;
  /** busbw / memcpy: the figure that is comparable across machines and loads (issue 15 item 6). */
  busbwOverMemcpy: number;
  ranks: number;
  iters: number;
  trials: number;
  transport: Transport;
  backend: 'shm' | 'gloo';
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?$/i.exec(s.trim());
  if (!m) throw new RangeError(`bad size '${s}'`);
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Math.round(Number(m[1]) * mult);
}

function fmtBytes(b: number): string {
  if (b >= 1024 ** 2) return `${b / 1024 ** 2} MiB`;
  if (b >= 1024) return `${b / 1024} KiB`;
  return `${b} B`;
}

/** Spawns `ranks` pinned rank processes that time all-reduce for each size. */
export async function allreduceBench(opts: BenchOptions = {}): Promise<BenchResult[]> {
  const ranks = opts.ranks ?? 2;
  const sizes = opts.sizes ?? DEFAULT_BENCH_SIZES;
  const out = opts.out === undefined ? process.stdout : opts.out;
  const env: NodeJS.ProcessEnv = {
    MPO_BENCH_SIZES: sizes.join(','),
    MPO_BENCH_TRIALS: String(opts.trials ?? 5),
    MPO_BENCH_TRANSPORT: opts.transport ?? 'f32',
  };
  if (opts.iters !== undefined) env.MPO_BENCH_ITERS = String(opts.iters);
  if (opts.backend === 'gloo') {
    env.MPO_BENCH_BACKEND = 'gloo';
    env.MPO_C10D_STORE = `127.0.0.1:${await freeLoopbackPort()}`;
  }
  if (opts.timeoutMs !== undefined) env.MPO_ALLREDUCE_TIMEOUT_MS = String(opts.timeoutMs);
  const launched = launchRanks({
    ranks,
    command: process.execPath,
    args: [join(packageRoot, 'dist', 'bench-rank.js')],
    env,
    devices: { kind: 'cpu', cores: opts.cores },
    stdio: 'pipe',
    killGraceMs: 1000,
  });
  const results: BenchResult[] = [];
  const stderr: string[] = [];
  if (!opts.json && out)
    out.write(
      `${'size'.padStart(10)} ${'time (us)'.padStart(12)} ${'algbw (GB/s)'.padStart(13)} ${'busbw (GB/s)'.padStart(13)} ${'memcpy (GB/s)'.padStart(14)} ${'busbw/memcpy'.padStart(13)}\n`,
    );
  for (const r of launched.ranks) {
    r.child.stderr?.on('data', (d: Buffer) => stderr.push(`[rank ${r.rank}] ${d.toString()}`));
    if (!r.child.stdout) continue;
    const rl = createInterface({ input: r.child.stdout });
    rl.on('line', (line) => {
      if (r.rank !== 0 || !line.startsWith('{')) return;
      const rec = JSON.parse(line) as BenchResult;
      results.push(rec);
      if (!out) return;
      if (opts.json) out.write(`${JSON.stringify(rec)}\n`);
      else
        out.write(
          `${fmtBytes(rec.bytes).padStart(10)} ${rec.timeUs.toFixed(1).padStart(12)} ${rec.algbwGBps.toFixed(2).padStart(13)} ${rec.busbwGBps.toFixed(2).padStart(13)} ${rec.memcpyGBps.toFixed(2).padStart(14)} ${rec.busbwOverMemcpy.toFixed(2).padStart(13)}\n`,
        );
    });
  }
  const { exitCode } = await launched.exited;
  if (exitCode !== 0) throw new Error(`allreduce bench failed (exit ${exitCode}):\n${stderr.join('')}`);
  return results;
}

const BENCH_USAGE = `usage: mpo allreduce bench [--ranks N] [--json] [--sizes 4K,64M] [--iters N] [--trials N] [--transport f32|bf16] [--backend shm|gloo] [--cores LIST]
`;

/** `mpo allreduce bench` entry; returns the exit code. */
export async function allreduceBenchMain(argv: string[]): Promise<number> {
  const o: BenchOptions = {};
  try {
    for (let i = 0; i < argv.length; i++) {
      const f = argv[i] as string;
      const [name, inline] = f.includes('=')
        ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]
        : [f, undefined];
      const value = (): string => {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new Error(`${name} needs a value`);
        return v;
      };
      switch (name) {
        case '--ranks':
        case '-n':
          o.ranks = Number(value());
          break;
        case '--json':
          o.json = true;
          break;
        case '--sizes':
          o.sizes = value().split(',').map(parseSize);
          break;
        case '--iters':
          o.iters = Number(value());
          break;
        case '--trials':
          o.trials = Number(value());
          break;
        case '--transport':
          o.transport = value() as Transport;
          break;
        case '--backend':
          o.backend = value() as 'shm' | 'gloo';
          break;
        case '--cores':
          o.cores = parseCoreList(value());
          break;
        case '-h':
        case '--help':
          process.stdout.write(BENCH_USAGE);
          return 0;
        default:
          throw new Error(`unknown option ${f}`);
      }
    }
    if (!Number.isInteger(o.ranks ?? 2) || (o.ranks ?? 2) < 1)
      throw new Error('--ranks must be a positive integer');
  } catch (e) {
    process.stderr.write(`mpo allreduce bench: ${errorMessage(e)}\n${BENCH_USAGE}`);
    return 2;
  }
  try {
    await allreduceBench(o);
    return 0;
  } catch (e) {
    process.stderr.write(`mpo allreduce bench: ${errorMessage(e)}\n`);
    return 1;
  }
}
