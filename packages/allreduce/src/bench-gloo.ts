// The all-reduce benchmark's gloo side (issue 15 item 6: report gloo's figures beside ours): the same
// rank loop over libtorch's ProcessGroupGloo (src/c10d.ts) on loopback, so both are timed by one harness.
import { createServer } from 'node:net';
import { C10dCommunicator } from './c10d.js';
import type { ReduceOp } from './group.js';

/** What bench-rank.ts needs of a group. */
export interface BenchComm {
  rank: number;
  worldSize: number;
  allReduce(buf: Float32Array, op?: ReduceOp, opts?: unknown): Promise<void>;
  barrier(): Promise<void>;
  close(): Promise<void>;
}

/** A loopback port for the TCPStore of a gloo benchmark. */
export async function freeLoopbackPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Joins a gloo group from RANK, WORLD_SIZE and MPO_C10D_STORE (127.0.0.1:port). */
export async function joinGlooBench(env: NodeJS.ProcessEnv): Promise<BenchComm> {
  const [host, port] = (env.MPO_C10D_STORE ?? '').split(':');
  const g = await C10dCommunicator.join({
    host: host || '127.0.0.1',
    port: Number(port),
    rank: Number(env.RANK ?? 0),
    worldSize: Number(env.WORLD_SIZE ?? 1),
  });
  const token = new Float32Array(1);
  return {
    rank: g.rank,
    worldSize: g.worldSize,
    allReduce: (buf, op) => g.allReduce(buf, op),
    barrier: () => g.allReduce(token),
    close: () => g.close(),
  };
}
