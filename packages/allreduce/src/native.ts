// Loads the compiled addon. The path is resolved from the package root, so this works from src/
// (vitest) and from dist/ alike.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot: string = fileURLToPath(new URL('..', import.meta.url));

export interface NativeGroupInfo {
  name: string;
  shmName: string;
  rank: number;
  world: number;
  closed: boolean;
  timeoutMs: number;
  smallBytes: number;
  stagingBytes: number;
  segmentBytes?: number;
  chunkElems?: number;
}

/** The shared-memory group's options as the addon reads them (group.ts adds the JS-side transport). */
export interface NativeGroupOptions {
  /** A peer that makes no progress for this long fails the call on every rank. Default 60 000. */
  timeoutMs?: number;
  /** Messages up to this many bytes (per rank) take the direct path. Default 64 KiB. */
  smallBytes?: number;
  /** Per-rank staging for reduce-scatter/all-gather rounds. Default 1 MiB. */
  stagingBytes?: number;
  /** Spin this long on a peer before sleeping on its futex. Default 50 µs. */
  spinUs?: number;
  /** How often a sleeping waiter checks that the awaited peer is still alive. Default 5 ms. */
  livenessMs?: number;
  /** The group's worker thread spins this long for the next call before sleeping. Default 0. */
  workerSpinUs?: number;
}

export interface NativeShmGroup {
  join(): Promise<void>;
  allReduce(buf: Float32Array, op: 0 | 1, transport: 0 | 1): Promise<void>;
  reduceScatter(buf: Float32Array, alignLog2: number): Promise<void>;
  allGather(buf: Float32Array, alignLog2: number): Promise<void>;
  broadcast(buf: ArrayBufferView, root: number): Promise<void>;
  barrier(): Promise<void>;
  close(): Promise<void>;
  info(): NativeGroupInfo;
}

export interface NativeNcclComm {
  init(): Promise<void>;
  allReduceDevice(ptr: bigint, count: number, dtype: 0 | 1, op: 0 | 1): Promise<void>;
  allReduceHost(buf: Float32Array, op: 0 | 1): Promise<void>;
  destroy(): void;
}

export interface NativeNccl {
  version(): number;
  deviceCount(): number;
  getUniqueId(): Uint8Array;
  NcclComm: new (uniqueId: Uint8Array, rank: number, world: number, device: number) => NativeNcclComm;
  deviceAlloc(device: number, bytes: number): bigint;
  deviceFree(device: number, ptr: bigint): void;
  copyToDevice(device: number, ptr: bigint, src: ArrayBufferView): void;
  copyFromDevice(device: number, dst: ArrayBufferView, ptr: bigint): void;
}

export interface NativeAddon {
  ShmGroup: new (name: string, rank: number, world: number, opts?: NativeGroupOptions) => NativeShmGroup;
  setAffinity(cores: number[]): void;
  getAffinity(): number[];
  dieWithParent(signal?: number, expectedParentPid?: number): void;
  shmNameFor(group: string): string;
  maxRanks: number;
  hasNccl: boolean;
  nccl?: NativeNccl;
}

export const addonPath: string = join(packageRoot, 'build', 'Release', 'mpo_allreduce.node');
export const rankExecPath: string = join(packageRoot, 'build', 'Release', 'mpo-rank-exec');

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  if (!existsSync(addonPath)) {
    throw new Error(
      `@mpo/allreduce: native addon not built (${addonPath} is missing); run \`npm run build -w @mpo/allreduce\``,
    );
  }
  const require = createRequire(join(packageRoot, 'package.json'));
  cached = require(addonPath) as NativeAddon;
  return cached;
}
