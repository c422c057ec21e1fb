// libtorch's c10d process groups (native/c10d_group.cc): gloo between hosts on the CPU, NCCL between
// GPUs in a CUDA libtorch build. Rendezvous through c10d's TCPStore, served by rank 0 at host:port.
// We add no protocol of our own: this is the path for trials that span hosts (issue 15 item 2), and
// within a host the shared-memory group stays the fast path (hierarchical.ts combines them).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { errorMessage } from '@mpo/util';
import { AllReduceError, type ReduceOp } from './group.js';
import { packageRoot } from './native.js';

export type C10dBackend = 'gloo' | 'nccl';

export interface C10dOptions {
  /** TCPStore address: rank 0 listens there, the others connect. */
  host: string;
  port: number;
  rank: number;
  worldSize: number;
  backend?: C10dBackend;
  /** Rendezvous and per-collective timeout (default 60 s). */
  timeoutMs?: number;
  /** Key prefix in the store, so several groups can share one (default "mpo"). */
  prefix?: string;
  /** CUDA device of this rank (NCCL). */
  device?: number;
}

interface NativeC10dGroup {
  connect(): Promise<void>;
  allReduceSum(buf: Float32Array): Promise<void>;
  close(): void;
}
interface NativeC10d {
  C10dGroup: new (opts: C10dOptions) => NativeC10dGroup;
  backends: string;
}

export const c10dAddonPath: string = join(packageRoot, 'build', 'Release', 'mpo_c10d.node');
let cached: NativeC10d | undefined;

/** Backends of the built c10d addon ([] when it was not built: no libtorch c10d / gloo headers). */
export function c10dBackends(): C10dBackend[] {
  if (!existsSync(c10dAddonPath)) return [];
  return load().backends.split(',') as C10dBackend[];
}

function load(): NativeC10d {
  if (cached) return cached;
  if (!existsSync(c10dAddonPath))
    throw new Error(
      `@mpo/allreduce: ${c10dAddonPath} is missing: the c10d addon is built only where libtorch's c10d and ` +
        "gloo's headers are found (Debian: apt-get install libtorch-dev libgloo-dev; or LIBTORCH=<torch wheel dir>)",
    );
  cached = createRequire(join(packageRoot, 'package.json'))(c10dAddonPath) as NativeC10d;
  return cached;
}

export class C10dCommunicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: C10dBackend;
  #native: NativeC10dGroup;
  #closed = false;

  private constructor(n: NativeC10dGroup, opts: C10dOptions) {
    this.#native = n;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.backend = opts.backend ?? 'gloo';
  }

  /** Connects to (rank 0: serves) the store and joins the process group; resolves once all ranks are in. */
  static async join(opts: C10dOptions): Promise<C10dCommunicator> {
    const n = new (load().C10dGroup)({ prefix: 'mpo', timeoutMs: 60_000, backend: 'gloo', ...opts });
    try {
      await n.connect();
    } catch (e) {
      throw new AllReduceError(
        `c10d ${opts.backend ?? 'gloo'} rendezvous at ${opts.host}:${opts.port} failed: ${errorMessage(e)}`,
      );
    }
    return new C10dCommunicator(n, opts);
  }

  /** In place across the group; 'avg' divides by worldSize afterwards. */
  async allReduce(buf: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    if (this.#closed) throw new AllReduceError('c10d group is closed');
    try {
      await this.#native.allReduceSum(buf);
    } catch (e) {
      throw new AllReduceError(`c10d ${this.backend} all-reduce failed: ${errorMessage(e)}`);
    }
    if (op === 'avg') for (let i = 0; i < buf.length; i++) buf[i]! /= this.worldSize;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close();
  }
}
