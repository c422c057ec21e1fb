// All-reduce for a trial whose ranks span hosts (issue 15 item 2): the shared-memory group inside each
// host, and a c10d gloo group between the hosts' leaders (local rank 0), nothing else on the network.
//
//   1. shm all-reduce inside the host: every local rank holds its host's sum;
//   2. the leaders all-reduce that over gloo: each leader holds the global sum; the other local ranks
//      zero their buffer;
//   3. shm all-reduce inside the host again: leader's global sum + zeros = the global sum everywhere.
// Step 3 spends a second shared-memory pass (fast, ~memory bandwidth) instead of a broadcast, and adding
// exact zeros changes no bit, so every rank of every host ends with identical values.
// One host: only step 1. One rank per host: only step 2.
import { C10dCommunicator, type C10dOptions } from './c10d.js';
import { joinGroupFromEnv, type ReduceOp, type ShmCommunicator } from './group.js';

export interface HierarchicalLayout {
  /** Global rank and world size. */
  rank: number;
  worldSize: number;
  /** This host's index among the trial's hosts, and how many hosts. */
  hostRank: number;
  hosts: number;
  /** Rank within the host (0 = leader). */
  localRank: number;
}

export class HierarchicalCommunicator {
  readonly backend = 'hierarchical' as const;
  constructor(
    readonly layout: HierarchicalLayout,
    private readonly local: ShmCommunicator | undefined,
    private readonly leaders: C10dCommunicator | undefined,
  ) {}

  get rank(): number {
    return this.layout.rank;
  }
  get worldSize(): number {
    return this.layout.worldSize;
  }

  async allReduce(buf: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    const multiLocal = this.local !== undefined && this.local.worldSize > 1;
    if (multiLocal) await this.local!.allReduce(buf, 'sum');
    if (this.layout.hosts > 1) {
      if (this.leaders) await this.leaders.allReduce(buf, 'sum');
      else buf.fill(0);
      if (multiLocal) await this.local!.allReduce(buf, 'sum');
    }
    if (op === 'avg') for (let i = 0; i < buf.length; i++) buf[i]! /= this.worldSize;
  }

  async close(): Promise<void> {
    await this.leaders?.close();
    await this.local?.close();
  }
}

function envInt(env: NodeJS.ProcessEnv, name: string): number {
  const v = env[name];
  const n = v === undefined ? Number.NaN : Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`${name} must be a non-negative integer (got ${JSON.stringify(v)})`);
  return n;
}

/**
 * Joins from the environment a rank of a multi-host trial gets: RANK, WORLD_SIZE; MPO_HOST_RANK,
 * MPO_HOSTS; LOCAL_RANK, LOCAL_WORLD_SIZE (the shared-memory group, named by MPO_GROUP, holds the
 * host's ranks: the shm variables RANK/WORLD_SIZE are set to the local ones for it); MPO_C10D_STORE
 * = host:port of the leaders' TCPStore (the first host's leader serves it); MPO_C10D_TIMEOUT_MS (default
 * 60 s): how long a leader waits for the others, at rendezvous and in each all-reduce, before failing.
 */
export async function joinHierarchicalFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  c10d: Partial<C10dOptions> = {},
): Promise<HierarchicalCommunicator> {
  const layout: HierarchicalLayout = {
    rank: envInt(env, 'RANK'),
    worldSize: envInt(env, 'WORLD_SIZE'),
    hostRank: envInt(env, 'MPO_HOST_RANK'),
    hosts: envInt(env, 'MPO_HOSTS'),
    localRank: envInt(env, 'LOCAL_RANK'),
  };
  const localSize = envInt(env, 'LOCAL_WORLD_SIZE');
  const local =
    localSize > 1
      ? await joinGroupFromEnv({
          env: { ...env, RANK: String(layout.localRank), WORLD_SIZE: String(localSize) },
        })
      : undefined;
  let leaders: C10dCommunicator | undefined;
  if (layout.hosts > 1 && layout.localRank === 0) {
    const store = env.MPO_C10D_STORE ?? '';
    const m = /^(.+):(\d+)$/.exec(store);
    if (!m) throw new Error(`MPO_C10D_STORE must be host:port (got ${JSON.stringify(store)})`);
    leaders = await C10dCommunicator.join({
      host: m[1]!,
      port: Number(m[2]),
      rank: layout.hostRank,
      worldSize: layout.hosts,
      backend: 'gloo',
      ...(env.MPO_C10D_TIMEOUT_MS ? { timeoutMs: envInt(env, 'MPO_C10D_TIMEOUT_MS') } : {}),
      ...c10d,
    });
  }
  return new HierarchicalCommunicator(layout, local, leaders);
}
