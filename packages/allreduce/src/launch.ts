import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { createInterface } from 'node:readline';
import { errorMessage } from '@mpo/util';
import { formatCoreList, groupNameFromJobId, parseCoreList } from './group.js';
import { native, rankExecPath } from './native.js';

/** Where ranks run: distinct CPU cores (sched_setaffinity), or one GPU each (CUDA_VISIBLE_DEVICES). */
export type DeviceSpec =
  | {
      kind: 'cpu';
      /** Cores to hand out (default: this process's affinity mask). */
      cores?: number[];
      /** Cores per rank (default: as many as divide evenly, at least 1). */
      coresPerRank?: number;
    }
  | { kind: 'gpu'; ids: number[] };

export interface LaunchOptions {
  /** Rank processes started here (this host's share of the trial). */
  ranks: number;
  /**
   * A trial spanning hosts (a gang): the global rank of this host's first rank and the trial's world
   * size. RANK = rankOffset + local rank, WORLD_SIZE = worldSize; LOCAL_RANK / LOCAL_WORLD_SIZE stay
   * this host's. Default: 0 and `ranks` (every rank is here).
   */
  rankOffset?: number;
  worldSize?: number;
  command: string;
  args?: string[];
  /** Extra environment (over process.env). */
  env?: NodeJS.ProcessEnv;
  devices?: DeviceSpec;
  /** Group name; default: derived from `jobId`, else unique to this launch. */
  group?: string;
  jobId?: string;
  cwd?: string;
  /** 'inherit' (default), 'pipe' (rank.child.stdout/stderr readable), 'ignore', or 'tag': inherit with "[rank i] " prefixes. */
  stdio?: 'inherit' | 'pipe' | 'ignore' | 'tag';
  /** When a rank fails, terminate the others after `killGraceMs` (default true). */
  killOnFailure?: boolean;
  /** Grace before SIGTERM-ing the surviving ranks of a failed launch (default 10 000 ms). */
  killGraceMs?: number;
  /**
   * Start each rank through the mpo-rank-exec wrapper, which sets the parent-death signal and the
   * affinity before exec (default: whenever the wrapper is built). Without it the rank itself must
   * call joinGroupFromEnv (or setAffinity/dieWithParent) to be pinned and tied to the launcher.
   */
  useExecHelper?: boolean;
}

export interface RankProcess {
  rank: number;
  pid: number;
  child: ChildProcess;
  cores?: number[];
  gpu?: number;
}

export interface RankExit {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchResult {
  exits: RankExit[];
  /** The rank that failed first (in time), if any did. */
  firstFailed?: number;
  /** 0 if every rank exited 0, else the first failing rank's code (128 + signal number if killed). */
  exitCode: number;
}

export interface LaunchedRanks {
  group: string;
  worldSize: number;
  ranks: RankProcess[];
  /** Resolves when every rank has exited. */
  exited: Promise<LaunchResult>;
  /** Sends `signal` (default SIGTERM) to every rank still running. */
  kill(signal?: NodeJS.Signals): void;
}

function exitCodeOf(exits: RankExit[], firstFailed?: number): number {
  const order = firstFailed === undefined ? exits : [exits[firstFailed] as RankExit, ...exits];
  for (const e of order) {
    if (e.signal) return 128 + (constants.signals[e.signal] ?? 0);
    if (e.code !== 0) return e.code ?? 1;
  }
  return 0;
}

function defaultCores(): number[] {
  try {
    return native().getAffinity();
  } catch {
    return Array.from({ length: availableParallelism() }, (_, i) => i);
  }
}

/** Cores for each rank: consecutive blocks of `coresPerRank`, wrapping when there are too few. */
export function assignCores(ranks: number, cores: number[], coresPerRank?: number): number[][] {
  if (cores.length === 0) throw new RangeError('no cores to assign');
  const per = coresPerRank ?? Math.max(1, Math.floor(cores.length / ranks));
  if (!Number.isInteger(per) || per < 1)
    throw new RangeError(`coresPerRank must be a positive integer, got ${per}`);
  return Array.from({ length: ranks }, (_, r) =>
    Array.from({ length: per }, (_, k) => cores[(r * per + k) % cores.length] as number),
  );
}

let launchCounter = 0;

/** The launch's checked shape: ranks, their place in the world, the group name, and each rank's cores or GPU. */
function launchPlan(opts: LaunchOptions) {
  const k = opts.ranks;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`ranks must be a positive integer, got ${k}`);
  const rankOffset = opts.rankOffset ?? 0;
  const worldSize = opts.worldSize ?? k;
  if (
    !Number.isInteger(rankOffset) ||
    rankOffset < 0 ||
    !Number.isInteger(worldSize) ||
    rankOffset + k > worldSize
  )
    throw new RangeError(`ranks ${rankOffset}..${rankOffset + k - 1} do not fit a world of ${worldSize}`);
  const devices: DeviceSpec = opts.devices ?? { kind: 'cpu' };
  const group =
    opts.group ??
    (opts.jobId !== undefined
      ? groupNameFromJobId(opts.jobId)
      : `launch-${process.pid}-${Date.now().toString(36)}-${launchCounter++}`);
  let coreSets: number[][] | undefined;
  let gpus: number[] | undefined;
  if (devices.kind === 'cpu') {
    coreSets = assignCores(k, devices.cores ?? defaultCores(), devices.coresPerRank);
  } else {
    if (devices.ids.length < k) {
      throw new RangeError(
        `${k} ranks need ${k} GPU ids, got ${devices.ids.length} (${devices.ids.join(',')})`,
      );
    }
    gpus = devices.ids.slice(0, k);
  }
  const helper = (opts.useExecHelper ?? true) && existsSync(rankExecPath);
  if (opts.useExecHelper === true && !helper) throw new Error(`exec wrapper not built: ${rankExecPath}`);
  return { k, rankOffset, worldSize, group, coreSets, gpus, helper };
}

/** A rank's environment (its place in the world, group, cores or GPU) and its command, through the exec wrapper when built. */
function rankCommand(
  opts: LaunchOptions,
  p: {
    r: number;
    rank: number;
    worldSize: number;
    k: number;
    group: string;
    cores: number[] | undefined;
    gpu: number | undefined;
    helper: boolean;
  },
): { file: string; argv: string[]; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    RANK: String(p.rank),
    WORLD_SIZE: String(p.worldSize),
    LOCAL_RANK: String(p.r),
    LOCAL_WORLD_SIZE: String(p.k),
    MPO_GROUP: p.group,
    MPO_PARENT_PID: String(process.pid),
  };
  const { cores, gpu } = p;
  if (cores) {
    env.MPO_CPU_CORES = formatCoreList(cores);
    env.OMP_NUM_THREADS ??= String(cores.length);
  }
  if (gpu !== undefined) {
    env.CUDA_VISIBLE_DEVICES = String(gpu);
    env.MPO_GPU = String(gpu);
    delete env.MPO_CPU_CORES;
  }
  const args = opts.args ?? [];
  const [file, argv] = p.helper
    ? [
        rankExecPath,
        [
          '--pdeathsig',
          String(constants.signals.SIGKILL),
          '--parent',
          String(process.pid),
          ...(cores ? ['--cores', formatCoreList(cores)] : []),
          '--',
          opts.command,
          ...args,
        ],
      ]
    : [opts.command, args];
  return { file, argv, env };
}

/** Starts one rank; with stdio 'tag' its output lines are prefixed "[rank r]". `onExit` hears its end (127: not started). */
function spawnRank(
  opts: LaunchOptions,
  r: number,
  { file, argv, env }: { file: string; argv: string[]; env: NodeJS.ProcessEnv },
  onExit: (rank: number, code: number | null, signal: NodeJS.Signals | null) => void,
) {
  const stdio = opts.stdio ?? 'inherit';
  const child = spawn(file, argv, {
    env,
    cwd: opts.cwd,
    stdio: stdio === 'tag' ? ['inherit', 'pipe', 'pipe'] : stdio,
  });
  if (stdio === 'tag') {
    for (const [stream, out] of [
      [child.stdout, process.stdout],
      [child.stderr, process.stderr],
    ] as const) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) =>
        out.write(`[rank ${r}] ${line}\n`),
      );
    }
  }
  child.on('exit', (code, signal) => onExit(r, code, signal));
  child.on('error', (err) => {
    process.stderr.write(`[launch] rank ${r}: ${err.message}\n`);
    onExit(r, 127, null);
  });
  return child;
}

/**
 * Spawns `ranks` processes of `command args` with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MPO_GROUP, MPO_PARENT_PID and either MPO_CPU_CORES (pinned) or CUDA_VISIBLE_DEVICES. Ranks die
 * with this process (PR_SET_PDEATHSIG).
 */
export function launchRanks(opts: LaunchOptions): LaunchedRanks {
  const { k, rankOffset, worldSize, group, coreSets, gpus, helper } = launchPlan(opts);

  const ranks: RankProcess[] = [];
  const exits: (RankExit | undefined)[] = new Array(k).fill(undefined);
  let firstFailed: number | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let resolveAll: (v: LaunchResult) => void = () => {};
  const exited = new Promise<LaunchResult>((res) => {
    resolveAll = res;
  });

  const killAll = (signal: NodeJS.Signals = 'SIGTERM') => {
    for (const r of ranks) {
      if (exits[r.rank] === undefined) {
        try {
          r.child.kill(signal);
        } catch {}
      }
    }
  };

  const onExit = (rank: number, code: number | null, signal: NodeJS.Signals | null) => {
    if (exits[rank] !== undefined) return;
    exits[rank] = { rank, code, signal };
    if ((code !== 0 || signal) && firstFailed === undefined) {
      firstFailed = rank;
      if (opts.killOnFailure !== false) {
        graceTimer = setTimeout(() => {
          killAll('SIGTERM');
          killTimer = setTimeout(() => killAll('SIGKILL'), 5000);
          killTimer.unref();
        }, opts.killGraceMs ?? 10_000);
        graceTimer.unref();
      }
    }
    if (exits.every((e) => e !== undefined)) {
      clearTimeout(graceTimer);
      clearTimeout(killTimer);
      // The ranks unlink the segment themselves once joined, or when a join fails; only a group
      // whose members all died during the join can leave it behind. Nobody uses it any more.
      try {
        rmSync(`/dev/shm/mpo-ar-${group}`, { force: true });
      } catch {}
      const all = exits as RankExit[];
      const result: LaunchResult = { exits: all, exitCode: exitCodeOf(all, firstFailed) };
      if (firstFailed !== undefined) result.firstFailed = firstFailed;
      resolveAll(result);
    }
  };

  for (let r = 0; r < k; r++) {
    const cores = coreSets?.[r];
    const gpu = gpus?.[r];
    const command = rankCommand(opts, {
      r,
      rank: rankOffset + r,
      worldSize,
      k,
      group,
      cores,
      gpu,
      helper,
    });
    const child = spawnRank(opts, r, command, onExit);
    const rp: RankProcess = { rank: r, pid: child.pid ?? -1, child };
    if (cores) rp.cores = cores;
    if (gpu !== undefined) rp.gpu = gpu;
    ranks.push(rp);
  }
  return { group, worldSize, ranks, exited, kill: killAll };
}

const LAUNCH_USAGE = `usage: mpo launch --ranks K [options] -- <command> [args...]
  --ranks K             number of rank processes (required)
  --cores LIST          cores to pin ranks to, e.g. 0-7 (default: this process's affinity)
  --cores-per-rank N    cores per rank (default: cores / ranks)
  --gpus LIST           one GPU per rank (CUDA_VISIBLE_DEVICES), e.g. 0,1
  --job-id ID           derive the group name from a job id
  --group NAME          group name (default: unique per launch)
  --timeout-ms N        all-reduce timeout for the ranks (MPO_ALLREDUCE_TIMEOUT_MS)
  --tag-output          prefix every output line with [rank i]
`;

/**
 * `mpo launch` entry: runs the ranks to completion and returns the exit code (0 when all ranks
 * succeed, else the first failing rank's code; 2 for a usage error). SIGINT/SIGTERM are forwarded.
 */
export async function launchMain(argv: string[]): Promise<number> {
  // Long: the launcher CLI: flags, then the launch and its exit code, in order.
  const sep = argv.indexOf('--');
  const flags = sep >= 0 ? argv.slice(0, sep) : argv;
  const cmd = sep >= 0 ? argv.slice(sep + 1) : [];
  const usage = (msg: string): number => {
    process.stderr.write(`mpo launch: ${msg}\n${LAUNCH_USAGE}`);
    return 2;
  };
  const o: Partial<LaunchOptions> & { timeoutMs?: string } = {};
  let cores: number[] | undefined;
  let coresPerRank: number | undefined;
  let gpus: number[] | undefined;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i] as string;
    const [name, inline] = f.includes('=')
      ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]
      : [f, undefined];
    const value = (): string => {
      const v = inline ?? flags[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    };
    try {
      switch (name) {
        case '--ranks':
        case '-n':
          o.ranks = Number(value());
          break;
        case '--cores':
          cores = parseCoreList(value());
          break;
        case '--cores-per-rank':
          coresPerRank = Number(value());
          break;
        case '--gpus':
          gpus = parseCoreList(value());
          break;
        case '--job-id':
          o.jobId = value();
          break;
        case '--group':
          o.group = value();
          break;
        case '--timeout-ms':
          o.timeoutMs = value();
          break;
        case '--tag-output':
          o.stdio = 'tag';
          break;
        case '-h':
        case '--help':
          process.stdout.write(LAUNCH_USAGE);
          return 0;
        default:
          return usage(`unknown option ${f}`);
      }
    } catch (e) {
      return usage(errorMessage(e));
    }
  }
  if (!o.ranks || !Number.isInteger(o.ranks) || o.ranks < 1) return usage('--ranks K is required (K >= 1)');
  if (cmd.length === 0) return usage('missing command after --');
  if (gpus && cores) return usage('--gpus and --cores are exclusive');
  let launched: LaunchedRanks;
  try {
    launched = launchRanks({
      ranks: o.ranks,
      command: cmd[0] as string,
      args: cmd.slice(1),
      devices: gpus ? { kind: 'gpu', ids: gpus } : { kind: 'cpu', cores, coresPerRank },
      group: o.group,
      jobId: o.jobId,
      stdio: o.stdio ?? 'inherit',
      env: o.timeoutMs ? { MPO_ALLREDUCE_TIMEOUT_MS: o.timeoutMs } : {},
    });
  } catch (e) {
    process.stderr.write(`mpo launch: ${errorMessage(e)}\n`);
    return 1;
  }
  const forward = (sig: NodeJS.Signals) => () => launched.kill(sig);
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const { exits, firstFailed: first, exitCode: code } = await launched.exited;
    if (code !== 0 && first !== undefined) {
      const e = exits[first] as RankExit;
      process.stderr.write(
        `mpo launch: rank ${first} failed first (${e.signal ? `signal ${e.signal}` : `exit code ${e.code}`})\n`,
      );
    }
    return code;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
