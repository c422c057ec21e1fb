// Joins the data-parallel group when this process is one of several ranks
// started by `mpo launch` (or the worker agent's launcher).
import type { Communicator } from '@mpo/trainer';

export async function communicatorFromEnv(): Promise<
  (Communicator & { close(): Promise<void> }) | undefined
> {
  const worldSize = Number(process.env.WORLD_SIZE ?? '1');
  if (!(worldSize > 1)) return undefined;
  const { joinGroupFromEnv } = await import('@mpo/allreduce');
  const group = await joinGroupFromEnv();
  return {
    rank: group.rank,
    worldSize: group.worldSize,
    allReduceSum: (buf) => group.allReduce(buf, 'sum'),
    reduceScatterSum: (buf, align) => group.reduceScatterSum(buf, align),
    allGather: (buf, align) => group.allGather(buf, align),
    close: () => group.close(),
  };
}
