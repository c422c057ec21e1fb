// Joins the data-parallel group when this process is one of several ranks
// started by `mpo launch` (or the worker agent's launcher):
// - default: the shared-memory group of this host;
// - MPO_HOSTS > 1 (a trial spanning hosts): shared memory inside the host, libtorch's c10d gloo between
//   the hosts' leaders (@mpo/allreduce joinHierarchicalFromEnv);
// - MPO_ALLREDUCE_BACKEND=gloo|nccl: every rank in one libtorch c10d group (ProcessGroupGloo, or
//   ProcessGroupNCCL on the rank's GPU with a CUDA libtorch build), rendezvous at MPO_C10D_STORE.
import type { Communicator } from '@mpo/trainer';

type Comm = Communicator & { close(): Promise<void> };

function wrap(g: {
  rank: number;
  worldSize: number;
  allReduce(b: Float32Array, op: 'sum'): Promise<void>;
  reduceScatterSum?(b: Float32Array, align?: number): Promise<void>;
  allGather?(b: Float32Array, align?: number): Promise<void>;
  close(): Promise<void>;
}): Comm {
  return {
    rank: g.rank,
    worldSize: g.worldSize,
    allReduceSum: (buf) => g.allReduce(buf, 'sum'),
    // ZeRO's collectives, where the group has them (the shared-memory group does; c10d here does not).
    ...(g.reduceScatterSum && g.allGather
      ? {
          reduceScatterSum: g.reduceScatterSum.bind(g),
          allGather: g.allGather.bind(g),
        }
      : {}),
    close: () => g.close(),
  };
}

async function c10dFromEnv(backend: 'gloo' | 'nccl', worldSize: number): Promise<Comm> {
  const { C10dCommunicator, c10dBackends } = await import('@mpo/allreduce');
  if (!c10dBackends().includes(backend))
    throw new Error(
      `MPO_ALLREDUCE_BACKEND=${backend}: this build of @mpo/allreduce has c10d backends [${c10dBackends().join(', ')}]` +
        (backend === 'nccl'
          ? ' (NCCL needs the addon built against a CUDA libtorch: LIBTORCH=<torch wheel>)'
          : ''),
    );
  const m = /^(.+):(\d+)$/.exec(process.env.MPO_C10D_STORE ?? '');
  if (!m)
    throw new Error(
      `MPO_ALLREDUCE_BACKEND=${backend} needs MPO_C10D_STORE=host:port (rank 0 serves the store)`,
    );
  return wrap(
    await C10dCommunicator.join({
      host: m[1]!,
      port: Number(m[2]),
      rank: Number(process.env.RANK ?? 0),
      worldSize,
      backend,
      // One GPU per rank through CUDA_VISIBLE_DEVICES (the launcher's), so it is device 0 in here.
      device: 0,
      ...(process.env.MPO_C10D_TIMEOUT_MS ? { timeoutMs: Number(process.env.MPO_C10D_TIMEOUT_MS) } : {}),
    }),
  );
}

export async function communicatorFromEnv(): Promise<Comm | undefined> {
  const worldSize = Number(process.env.WORLD_SIZE ?? '1');
  if (!(worldSize > 1)) return undefined;
  const backend = process.env.MPO_ALLREDUCE_BACKEND ?? 'shm';
  if (backend === 'gloo' || backend === 'nccl') return c10dFromEnv(backend, worldSize);
  if (backend !== 'shm')
    throw new Error(`MPO_ALLREDUCE_BACKEND must be shm, gloo or nccl (got "${backend}")`);
  const allreduce = await import('@mpo/allreduce');
  if (Number(process.env.MPO_HOSTS ?? '1') > 1) return wrap(await allreduce.joinHierarchicalFromEnv());
  return wrap(await allreduce.joinGroupFromEnv());
}
