import { createHash } from 'node:crypto';
import { constants } from 'node:os';
import { type NativeGroupInfo, type NativeGroupOptions, type NativeShmGroup, native } from './native.js';

export type ReduceOp = 'sum' | 'avg';
/** Wire format between ranks. `bf16` halves the bytes moved; results are rounded to bf16. */
export type Transport = 'f32' | 'bf16';

/** A buffer in accelerator memory (e.g. a CUDA tensor's data pointer). */
export interface DeviceBuffer {
  readonly kind: 'device';
  /** Device address. */
  readonly ptr: bigint;
  /** Number of elements. */
  readonly count: number;
  readonly dtype: 'f32' | 'bf16';
  /** CUDA device ordinal (as seen by this process). */
  readonly device: number;
}

export type CommBuffer = Float32Array | DeviceBuffer;

export function isDeviceBuffer(b: CommBuffer): b is DeviceBuffer {
  return !(b instanceof Float32Array) && (b as DeviceBuffer).kind === 'device';
}

/**
 * What data-parallel training needs from a process group. `ShmCommunicator` serves host memory
 * through shared memory; `NcclCommunicator` serves device buffers (and host buffers by staging).
 */
export interface Communicator {
  readonly backend: 'shm' | 'nccl';
  readonly rank: number;
  readonly worldSize: number;
  /** In place: every rank ends with the same element-wise sum (or mean) of all ranks' buffers. */
  allReduce(buf: CommBuffer, op?: ReduceOp): Promise<void>;
  barrier(): Promise<void>;
  close(): Promise<void>;
}

/** Rejection of a collective. `rank` is the rank the failure is attributed to, when known. */
export class AllReduceError extends Error {
  override readonly name = 'AllReduceError';
  readonly rank: number | undefined;
  constructor(message: string, rank?: number) {
    super(message);
    this.rank = rank;
  }
}

function wrapError(e: unknown): never {
  if (e instanceof Error) {
    const rank = (e as { rank?: unknown }).rank;
    throw new AllReduceError(e.message, typeof rank === 'number' ? rank : undefined);
  }
  throw e;
}

export interface GroupOptions extends NativeGroupOptions {
  /** Default transport of `allReduce`. Default 'f32'. */
  transport?: Transport;
}

export interface JoinOptions extends GroupOptions {
  /** Group name: [A-Za-z0-9._-], at most 200 characters. See `groupNameFromJobId`. */
  group: string;
  rank: number;
  worldSize: number;
}

/** The addons' codes of the reduce operations (shm group and NCCL alike). */
export const OPS: Record<ReduceOp, 0 | 1> = { sum: 0, avg: 1 };
const TRANSPORTS: Record<Transport, 0 | 1> = { f32: 0, bf16: 1 };

/** A process group over one POSIX shared-memory segment; ranks are processes of this host. */
export class ShmCommunicator implements Communicator {
  readonly backend = 'shm' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly group: string;
  readonly transport: Transport;
  #native: NativeShmGroup;

  private constructor(n: NativeShmGroup, opts: JoinOptions) {
    this.#native = n;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.group = opts.group;
    this.transport = opts.transport ?? 'f32';
  }

  /** Joins (rank 0 creates) the group and resolves once all `worldSize` ranks are in. */
  static async join(opts: JoinOptions): Promise<ShmCommunicator> {
    const { group, rank, worldSize } = opts;
    if (
      !Number.isInteger(rank) ||
      !Number.isInteger(worldSize) ||
      worldSize < 1 ||
      rank < 0 ||
      rank >= worldSize
    ) {
      throw new RangeError(`invalid rank ${rank} / worldSize ${worldSize}`);
    }
    if (opts.transport !== undefined && !(opts.transport in TRANSPORTS)) {
      throw new RangeError(`transport must be 'f32' or 'bf16', got ${String(opts.transport)}`);
    }
    const n = new (native().ShmGroup)(group, rank, worldSize, {
      timeoutMs: opts.timeoutMs,
      smallBytes: opts.smallBytes,
      stagingBytes: opts.stagingBytes,
      spinUs: opts.spinUs,
      livenessMs: opts.livenessMs,
      workerSpinUs: opts.workerSpinUs,
    });
    try {
      await n.join();
    } catch (e) {
      await n.close().catch(() => {});
      wrapError(e);
    }
    return new ShmCommunicator(n, opts);
  }

  /**
   * In-place sum/mean of `buf` across ranks. The addon works on the array's memory directly (an
   * ArrayBuffer over libtorch storage is fine); the buffer must not be touched until this settles.
   */
  async allReduce(buf: CommBuffer, op: ReduceOp = 'sum', opts?: { transport?: Transport }): Promise<void> {
    if (!(buf instanceof Float32Array)) {
      throw new TypeError(
        'ShmCommunicator.allReduce takes a Float32Array (host memory); use NcclCommunicator for device buffers',
      );
    }
    const o = OPS[op];
    if (o === undefined) throw new RangeError(`op must be 'sum' or 'avg', got ${String(op)}`);
    const t = TRANSPORTS[opts?.transport ?? this.transport];
    if (t === undefined)
      throw new RangeError(`transport must be 'f32' or 'bf16', got ${String(opts?.transport)}`);
    try {
      await this.#native.allReduce(buf, o, t);
    } catch (e) {
      wrapError(e);
    }
  }

  /** `allReduce(buf, 'sum')`: the shape the trainer's gradient hook expects. */
  allReduceSum(buf: Float32Array): Promise<void> {
    return this.allReduce(buf, 'sum');
  }

  /**
   * ZeRO stage 2's gradient collective: afterwards this rank's shard of `buf` (see `shardRange`)
   * holds the sum over ranks, added in rank order exactly as `allReduce` adds it (same bits); the
   * rest of `buf` is left as it was. Every rank passes the same length and `align`.
   */
  async reduceScatterSum(buf: Float32Array, align = 1): Promise<void> {
    try {
      await this.#native.reduceScatter(buf, alignLog2(align));
    } catch (e) {
      wrapError(e);
    }
  }

  /** Copies every rank's shard of `buf` (see `shardRange`) into the same place on all other ranks. */
  async allGather(buf: Float32Array, align = 1): Promise<void> {
    try {
      await this.#native.allGather(buf, alignLog2(align));
    } catch (e) {
      wrapError(e);
    }
  }

  /** Copies root's bytes of `buf` into every other rank's `buf` (same byte length everywhere). */
  async broadcast(buf: ArrayBufferView, root = 0): Promise<void> {
    try {
      await this.#native.broadcast(buf, root);
    } catch (e) {
      wrapError(e);
    }
  }

  async barrier(): Promise<void> {
    try {
      await this.#native.barrier();
    } catch (e) {
      wrapError(e);
    }
  }

  /** Leaves the group (after calls already submitted). Idempotent. */
  async close(): Promise<void> {
    try {
      await this.#native.close();
    } catch (e) {
      wrapError(e);
    }
  }

  info(): NativeGroupInfo {
    return this.#native.info();
  }
}

/**
 * The contiguous shard of `count` elements that `rank` of `worldSize` owns in reduceScatterSum and
 * allGather: shards of S = ceil(count / (worldSize·align))·align elements (a multiple of `align`,
 * a power of two), in rank order; the last ones may be shorter or empty.
 */
export function shardRange(
  count: number,
  rank: number,
  worldSize: number,
  align = 1,
): { start: number; end: number } {
  alignLog2(align);
  const size = Math.ceil(count / (worldSize * align)) * align;
  return { start: Math.min(count, rank * size), end: Math.min(count, (rank + 1) * size) };
}

function alignLog2(align: number): number {
  const l = Math.log2(align);
  if (!Number.isInteger(l) || l < 0 || l > 30)
    throw new RangeError(`align must be a power of two <= 2^30, got ${align}`);
  return l;
}

export function joinGroup(opts: JoinOptions): Promise<ShmCommunicator> {
  return ShmCommunicator.join(opts);
}

/**
 * A group name for a job id: characters outside [A-Za-z0-9._-] become '_', long ids are cut, and a
 * short hash of the original id keeps distinct ids distinct.
 */
export function groupNameFromJobId(jobId: string): string {
  if (jobId.length === 0) throw new RangeError('job id must not be empty');
  const clean = jobId
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^[.]+/, '_')
    .slice(0, 120);
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 10);
  return `${clean}-${hash}`;
}

/** Where the group's segment appears while it is linked (only during join; see README). */
export function shmPathFor(group: string): string {
  return `/dev/shm${native().shmNameFor(group)}`;
}

export interface FromEnvOptions extends GroupOptions {
  env?: NodeJS.ProcessEnv;
  /** Apply MPO_CPU_CORES with setAffinity (default true). */
  pin?: boolean;
  /** Honour MPO_PARENT_PID with dieWithParent (default true). */
  dieWithParent?: boolean;
}

function envInt(env: NodeJS.ProcessEnv, key: string): number | undefined {
  const v = env[key];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new RangeError(`${key}=${v} is not an integer`);
  return n;
}

/**
 * The rank side of `launchRanks`: reads RANK, WORLD_SIZE, MPO_GROUP (and MPO_CPU_CORES,
 * MPO_PARENT_PID, MPO_ALLREDUCE_{TIMEOUT_MS,TRANSPORT,SMALL_BYTES,STAGING_BYTES,SPIN_US,WORKER_SPIN_US}),
 * pins this process, arranges
 * to die with the launcher, and joins the group. Without RANK/WORLD_SIZE it is a group of one.
 */
export async function joinGroupFromEnv(opts: FromEnvOptions = {}): Promise<ShmCommunicator> {
  const env = opts.env ?? process.env;
  const rank = envInt(env, 'RANK') ?? 0;
  const worldSize = envInt(env, 'WORLD_SIZE') ?? 1;
  const cores = env.MPO_CPU_CORES;
  if (cores && opts.pin !== false) setAffinity(parseCoreList(cores));
  const parent = envInt(env, 'MPO_PARENT_PID');
  if (parent && opts.dieWithParent !== false) native().dieWithParent(9, parent);
  let group = env.MPO_GROUP;
  if (!group) {
    if (worldSize > 1)
      throw new Error('MPO_GROUP is not set (WORLD_SIZE > 1): launch ranks with launchRanks / mpo launch');
    group = `solo-${process.pid}`;
  }
  const transport = (env.MPO_ALLREDUCE_TRANSPORT as Transport | undefined) || undefined;
  return ShmCommunicator.join({
    ...opts,
    timeoutMs: opts.timeoutMs ?? envInt(env, 'MPO_ALLREDUCE_TIMEOUT_MS'),
    smallBytes: opts.smallBytes ?? envInt(env, 'MPO_ALLREDUCE_SMALL_BYTES'),
    stagingBytes: opts.stagingBytes ?? envInt(env, 'MPO_ALLREDUCE_STAGING_BYTES'),
    spinUs: opts.spinUs ?? envInt(env, 'MPO_ALLREDUCE_SPIN_US'),
    workerSpinUs: opts.workerSpinUs ?? envInt(env, 'MPO_ALLREDUCE_WORKER_SPIN_US'),
    transport: opts.transport ?? transport,
    group,
    rank,
    worldSize,
  });
}

/** Pins every thread of this process to `cores` (sched_setaffinity on each task). */
export function setAffinity(cores: readonly number[]): void {
  native().setAffinity([...cores]);
}

/** The cores this process may run on. */
export function getAffinity(): number[] {
  return native().getAffinity();
}

/**
 * PR_SET_PDEATHSIG: this process gets `signal` (default SIGKILL) when its parent dies. With
 * `expectedParentPid`, a parent that already died makes this process die at once.
 */
export function dieWithParent(signal: number | NodeJS.Signals = 'SIGKILL', expectedParentPid?: number): void {
  const signo = typeof signal === 'number' ? signal : constants.signals[signal];
  if (signo === undefined) throw new RangeError(`unknown signal ${String(signal)}`);
  native().dieWithParent(signo, expectedParentPid ?? 0);
}

/** "0,2-4" -> [0, 2, 3, 4] */
export function parseCoreList(s: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',')) {
    const t = part.trim();
    if (!t) continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(t);
    if (!m) throw new RangeError(`bad core list '${s}'`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new RangeError(`bad core range '${t}'`);
    for (let c = a; c <= b; c++) out.push(c);
  }
  if (out.length === 0) throw new RangeError(`empty core list '${s}'`);
  return out;
}

/** [0, 2, 3, 4] -> "0,2-4" */
export function formatCoreList(cores: readonly number[]): string {
  const s = [...new Set(cores)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === (s[j] as number) + 1) j++;
    parts.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
