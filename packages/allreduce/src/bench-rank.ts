// One rank of `allreduceBench` (run as dist/bench-rank.js by the launcher). Rank 0 prints one JSON
// line per size: the per-iteration time is the median over trials on each rank, averaged over
// ranks (nccl-tests' default), and the bandwidths follow nccl-tests' definitions.

import { type BenchComm, joinGlooBench } from './bench-gloo.js';
import { joinGroupFromEnv, type Transport } from './group.js';
import { memcpyGBps } from './memcpy-bench.js';

const env = process.env;
const sizes = (env.MPO_BENCH_SIZES ?? '4096').split(',').map(Number);
const fixedIters = env.MPO_BENCH_ITERS ? Number(env.MPO_BENCH_ITERS) : undefined;
const trials = Number(env.MPO_BENCH_TRIALS ?? 5);
const transport = (env.MPO_BENCH_TRANSPORT ?? 'f32') as Transport;

function itersFor(bytes: number): number {
  return Math.max(5, Math.min(2000, Math.floor(2 ** 31 / bytes)));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  const gloo = env.MPO_BENCH_BACKEND === 'gloo';
  const comm: BenchComm = gloo ? await joinGlooBench(env) : await joinGroupFromEnv();
  const n = comm.worldSize;
  for (const bytes of sizes) {
    const count = Math.floor(bytes / 4);
    const buf = new Float32Array(count);
    // correctness: rank r contributes r + 1 everywhere
    buf.fill(comm.rank + 1);
    await comm.allReduce(buf, 'sum', { transport });
    const want = (n * (n + 1)) / 2;
    for (const i of [0, count >> 1, count - 1]) {
      if (count > 0 && buf[i] !== want) throw new Error(`bench check failed at ${i}: ${buf[i]} != ${want}`);
    }
    buf.fill(0);
    const iters = fixedIters ?? itersFor(bytes);
    for (let i = 0; i < Math.min(iters, 20); i++) await comm.allReduce(buf, 'sum', { transport });
    const times: number[] = [];
    const copies: number[] = [];
    for (let t = 0; t < trials; t++) {
      await comm.barrier();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) await comm.allReduce(buf, 'sum', { transport });
      times.push(Number(process.hrtime.bigint() - t0) / 1e3 / iters);
      // memcpy trials interleaved with the all-reduce trials, so both see the same background load:
      // rank 0 copies the same size on its own core while the others wait at the next barrier.
      if (comm.rank === 0) copies.push(memcpyGBps(bytes, 1, Math.min(iters, 200)));
    }
    const avg = new Float32Array([median(times)]);
    await comm.allReduce(avg, 'avg');
    const timeUs = avg[0] as number;
    const algbwGBps = bytes / (timeUs * 1e-6) / 1e9;
    const busbwGBps = (algbwGBps * 2 * (n - 1)) / n;
    const memcpy = comm.rank === 0 ? median(copies) : 0;
    if (comm.rank === 0) {
      const rec = {
        bytes,
        timeUs: +timeUs.toFixed(2),
        algbwGBps: +algbwGBps.toFixed(3),
        busbwGBps: +busbwGBps.toFixed(3),
        memcpyGBps: +memcpy.toFixed(3),
        busbwOverMemcpy: +(busbwGBps / memcpy).toFixed(3),
        ranks: n,
        iters,
        trials,
        transport,
        backend: gloo ? 'gloo' : 'shm',
      };
      process.stdout.write(`${JSON.stringify(rec)}\n`);
    }
  }
  await comm.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`bench rank ${env.RANK}: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
