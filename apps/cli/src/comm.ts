// Joins the data-parallel group when this process is one of several ranks
// started by `mpo launch` (or the worker agent's launcher); with MPO_HOSTS > 1
// (a trial spanning hosts) the hierarchical shm + c10d gloo group.
import type { Communicator } from '@mpo/trainer';

export async function communicatorFromEnv(): Promise<
  (Communicator & { close(): Promise<void> }) | undefined
> {
  const worldSize = Number(process.env.WORLD_SIZE ?? '1');
  if (!(worldSize > 1)) return undefined;
  if (Number(process.env.MPO_HOSTS ?? '1') > 1) {
    // A trial spanning hosts: shared memory inside this host, libtorch's gloo between the hosts' leaders.
    const { joinHierarchicalFromEnv } = await import('@mpo/allreduce');
    const h = await joinHierarchicalFromEnv();
    return {
      rank: h.rank,
      worldSize: h.worldSize,
      allReduceSum: (buf) => h.allReduce(buf, 'sum'),
      close: () => h.close(),
    };
  }
  const { joinGroupFromEnv } = await import('@mpo/allreduce');
  const group = await joinGroupFromEnv();
  return {
    rank: group.rank,
    worldSize: group.worldSize,
    allReduceSum: (buf) => group.allReduce(buf, 'sum'),
    close: () => group.close(),
  };
}
