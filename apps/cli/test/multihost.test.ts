// Data-parallel training across hosts (issue 15 item 2): `mpo train` ranks started with the environment
// of a trial spanning hosts (MPO_HOSTS > 1) all-reduce through shared memory inside their host and
// libtorch's c10d gloo between the hosts' leaders. "Hosts" are separate shared-memory groups on this
// machine talking gloo over loopback. Same equivalence as the single-host path: after 20 steps the
// weights are those of one rank on the same global batch, within 1e-6.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { c10dBackends } from '@mpo/allreduce';
import { Model } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { mpo, mpoBin, repoRoot, tmp, writeJson } from './helpers.js';

const golden = join(repoRoot, 'packages/engine/test/fixtures/golden-llama');

const config = (output: string) => ({
  model: golden,
  data: { format: 'pretokenized', path: join(golden, 'pairs.jsonl'), heldOut: 0 },
  method: 'dpo',
  output,
  threads: 1,
  // 12 pairs, 4 per step: 20 steps take 7 epochs (maxSteps stops there). lr 1e-4: 100x the largest
  // of the paper's search range (3e-7 to 1e-6, its appendix), so the weights move by ~1e-3 in 20 steps,
  // while float32 summation order (one rank adds micro-batches one by one, ranks add per-rank sums),
  // which Adam turns into differences proportional to lr, stays below 1e-6 (at lr 5e-3 it reaches 1.7e-5,
  // as on the single-host path: apps/cli/test/train.test.ts allows 1e-5 there). A rank whose share went
  // missing would change the update of every weight by ~lr.
  training: {
    batchSize: 4,
    microBatchSize: 1,
    learningRate: 1e-4,
    epochs: 7,
    maxSteps: 20,
    warmupRatio: 0,
    seed: 1,
  },
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** `mpo train` as every rank of hosts x perHost, with the multi-host environment; resolves exit codes. */
async function trainAcrossHosts(cfg: string, hosts: number, perHost: number) {
  const port = await freePort();
  const id = randomUUID().slice(0, 8);
  const world = hosts * perHost;
  const runs = Array.from({ length: world }, (_, rank) => {
    const host = Math.floor(rank / perHost);
    const child = spawn(process.execPath, [mpoBin, 'train', '--config', cfg, '--json'], {
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(world),
        MPO_HOST_RANK: String(host),
        MPO_HOSTS: String(hosts),
        LOCAL_RANK: String(rank % perHost),
        LOCAL_WORLD_SIZE: String(perHost),
        MPO_GROUP: `mh-${id}-h${host}`,
        MPO_C10D_STORE: `127.0.0.1:${port}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    return new Promise<{ code: number | null; out: string; err: string }>((r) =>
      child.on('exit', (code) => r({ code, out, err })),
    );
  });
  return Promise.all(runs);
}

async function maxWeightDiff(a: string, b: string): Promise<number> {
  const [ma, mb] = await Promise.all([Model.load(a, { threads: 1 }), Model.load(b, { threads: 1 })]);
  const pa = ma.paramBuffer();
  const pb = mb.paramBuffer();
  let d = 0;
  for (let i = 0; i < pa.length; i++) d = Math.max(d, Math.abs(pa[i]! - pb[i]!));
  ma.dispose();
  mb.dispose();
  return d;
}

describe.skipIf(!c10dBackends().includes('gloo'))(
  'data-parallel training across hosts (shm + c10d gloo)',
  () => {
    it('2 hosts x 2 ranks, 2 hosts x 1 rank and one gloo group of 2 reach the one-rank weights after 20 steps', async () => {
      const dir = tmp('multihost');
      const one = await mpo([
        'train',
        '--config',
        writeJson(dir, '1.json', config(join(dir, 'one'))),
        '--json',
      ]);
      expect(one.code).toBe(0);
      expect(one.lines.at(-1)).toMatchObject({ type: 'done', step: 20 });
      // The run is not trivially equal: 20 steps moved the weights far more than the tolerance.
      expect(await maxWeightDiff(golden, join(dir, 'one', 'final'))).toBeGreaterThan(1e-3);
      for (const [hosts, perHost] of [
        [2, 2],
        [2, 1],
      ] as const) {
        const out = join(dir, `h${hosts}x${perHost}`);
        const ranks = await trainAcrossHosts(
          writeJson(dir, `${hosts}x${perHost}.json`, config(out)),
          hosts,
          perHost,
        );
        expect(
          ranks.map((r) => r.code),
          ranks.map((r) => r.err.slice(-1500)).join('\n'),
        ).toEqual(ranks.map(() => 0));
        // Rank 0 alone reports and writes the checkpoint.
        const done = ranks.map(
          (r) =>
            r.out
              .trim()
              .split('\n')
              .filter((l) => l.includes('"type":"done"')).length,
        );
        expect(done).toEqual(ranks.map((_, i) => (i === 0 ? 1 : 0)));
        expect(await maxWeightDiff(join(dir, 'one', 'final'), join(out, 'final'))).toBeLessThan(1e-6);
      }

      // MPO_ALLREDUCE_BACKEND=gloo: all ranks in one c10d group (NCCL's path on GPUs, with gloo on the CPU).
      const glooOut = join(dir, 'gloo');
      const gloo = await mpo(
        [
          'launch',
          '--ranks',
          '2',
          '--',
          process.execPath,
          mpoBin,
          'train',
          '--config',
          writeJson(dir, 'g.json', config(glooOut)),
          '--json',
        ],
        { env: { MPO_ALLREDUCE_BACKEND: 'gloo', MPO_C10D_STORE: `127.0.0.1:${await freePort()}` } },
      );
      expect(gloo.code, gloo.stderr.slice(-1500)).toBe(0);
      expect(await maxWeightDiff(join(dir, 'one', 'final'), join(glooOut, 'final'))).toBeLessThan(1e-6);
    }, 600_000);

    it('MPO_ALLREDUCE_BACKEND=nccl on an addon without NCCL fails at once and says why', async () => {
      const dir = tmp('nccl');
      const r = await mpo(
        [
          'launch',
          '--ranks',
          '2',
          '--',
          process.execPath,
          mpoBin,
          'train',
          '--config',
          writeJson(dir, 'n.json', config(join(dir, 'o'))),
          '--json',
        ],
        { env: { MPO_ALLREDUCE_BACKEND: 'nccl', MPO_C10D_STORE: `127.0.0.1:${await freePort()}` } },
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /MPO_ALLREDUCE_BACKEND=nccl: this build of @mpo\/allreduce has c10d backends \[gloo\].*CUDA libtorch/,
      );
    }, 120_000);
  },
);
