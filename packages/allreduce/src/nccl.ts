import { errorMessage } from '@mpo/util';
import {
  AllReduceError,
  type CommBuffer,
  type Communicator,
  type DeviceBuffer,
  isDeviceBuffer,
  OPS,
  type ReduceOp,
  type ShmCommunicator,
} from './group.js';
import { type NativeNccl, type NativeNcclComm, native } from './native.js';

/** True when the addon was built with NCCL (nccl.h, libnccl and the CUDA runtime were found). */
export function ncclAvailable(): boolean {
  try {
    return native().hasNccl === true && native().nccl !== undefined;
  } catch {
    return false;
  }
}

function nccl(): NativeNccl {
  const n = native().nccl;
  if (!native().hasNccl || !n) {
    throw new Error(
      '@mpo/allreduce was built without NCCL (nccl.h / libnccl / CUDA runtime not found at build time)',
    );
  }
  return n;
}

export interface NcclOptions {
  /** CUDA device ordinal as seen by this process (default 0: launchRanks sets CUDA_VISIBLE_DEVICES). */
  device?: number;
  /** Exchanges NCCL's unique id from rank 0; required when there is more than one rank. */
  bootstrap?: ShmCommunicator;
  rank?: number;
  worldSize?: number;
}

/** NCCL process group: device buffers in place; host Float32Arrays are staged through the GPU. */
export class NcclCommunicator implements Communicator {
  readonly backend = 'nccl' as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly device: number;
  #comm: NativeNcclComm;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(comm: NativeNcclComm, rank: number, worldSize: number, device: number) {
    this.#comm = comm;
    this.rank = rank;
    this.worldSize = worldSize;
    this.device = device;
  }

  static async create(opts: NcclOptions = {}): Promise<NcclCommunicator> {
    const n = nccl();
    const rank = opts.bootstrap?.rank ?? opts.rank ?? 0;
    const worldSize = opts.bootstrap?.worldSize ?? opts.worldSize ?? 1;
    const device = opts.device ?? 0;
    if (worldSize > 1 && !opts.bootstrap)
      throw new Error('NcclCommunicator.create: worldSize > 1 needs a bootstrap group');
    const id = rank === 0 ? n.getUniqueId() : new Uint8Array(128);
    if (opts.bootstrap) await opts.bootstrap.broadcast(id, 0);
    const comm = new n.NcclComm(id, rank, worldSize, device);
    await comm.init();
    return new NcclCommunicator(comm, rank, worldSize, device);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => {});
    return run;
  }

  allReduce(buf: CommBuffer, op: ReduceOp = 'sum'): Promise<void> {
    const o = OPS[op];
    if (o === undefined)
      return Promise.reject(new RangeError(`op must be 'sum' or 'avg', got ${String(op)}`));
    return this.#serial(async () => {
      try {
        if (isDeviceBuffer(buf)) {
          await this.#comm.allReduceDevice(buf.ptr, buf.count, buf.dtype === 'bf16' ? 1 : 0, o);
        } else {
          await this.#comm.allReduceHost(buf, o);
        }
      } catch (e) {
        throw new AllReduceError(errorMessage(e));
      }
    });
  }

  barrier(): Promise<void> {
    return this.allReduce(new Float32Array(1));
  }

  close(): Promise<void> {
    return this.#serial(async () => this.#comm.destroy());
  }
}

/** Test/bench helpers over cudaMalloc/cudaMemcpy (NCCL builds only). */
export const cudaTestHelpers = {
  deviceCount: (): number => nccl().deviceCount(),
  ncclVersion: (): number => nccl().version(),
  alloc(device: number, count: number): DeviceBuffer {
    return { kind: 'device', ptr: nccl().deviceAlloc(device, count * 4), count, dtype: 'f32', device };
  },
  free: (b: DeviceBuffer): void => nccl().deviceFree(b.device, b.ptr),
  upload: (b: DeviceBuffer, src: Float32Array): void => nccl().copyToDevice(b.device, b.ptr, src),
  download: (b: DeviceBuffer, dst: Float32Array): void => nccl().copyFromDevice(b.device, dst, b.ptr),
};
