// ZeRO stages 1 and 2 against the unsharded run, checkpoints of sharded optimizer state, and
// resuming on a different rank count. Ranks are real processes joined by the shm group.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { launchRanks, shardRange } from '@mpo/allreduce';
import { Model, readSafetensorsHeader } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { latestCheckpoint } from '../src/index.js';
import { roundToBf16, roundToBf16Bits, ZeroOptimizer } from '../src/zero.js';
import { mpoData, tinyModel, tmp } from './helpers.js';

const rankScript = join(import.meta.dirname, 'fixtures/zero-rank.mjs');

/**
 * A small Llama with ~170k parameters: three of the engine's 65 536-element norm blocks, so two
 * ranks own unequal shards (two blocks and the rest) and the norm is assembled across ranks.
 */
const model = {
  init: { ...tinyModel().init, hiddenSize: 64, intermediateSize: 256, maxPositionEmbeddings: 256 },
  seed: 11,
};

/** Rank `rank` of `worldSize` whose collectives do nothing: for what a rank holds, not what it computes. */
const silentComm = (rank: number, worldSize: number) => ({
  rank,
  worldSize,
  allReduceSum: async () => {},
  reduceScatterSum: async () => {},
  allGather: async () => {},
});

const config = (output: string, training: Record<string, unknown>) => ({
  model,
  data: { format: 'mpo', path: mpoData, limit: 24, heldOut: 0 },
  method: 'mpo',
  hyperparameters: { beta: 1.0 },
  cutoff: 64,
  output,
  threads: 1,
  training: {
    batchSize: 4,
    microBatchSize: 2,
    learningRate: 2e-3,
    warmupRatio: 0.1,
    weightDecay: 0.01,
    maxGradNorm: 0.5, // small enough that clipping acts: the norm must match across shardings
    maxSteps: 20,
    checkpointEvery: 0,
    seed: 3,
    ...training,
  },
});

interface RankLine {
  rank: number;
  hash: string;
  step: number;
  resumedFrom: number | null;
  stopped: boolean;
}

/** Trains `cfg` on `ranks` processes; resolves with rank 0's final line. */
async function train(ranks: number, cfg: object, env: NodeJS.ProcessEnv = {}): Promise<RankLine> {
  const launched = launchRanks({
    ranks,
    command: process.execPath,
    args: [rankScript, JSON.stringify(cfg)],
    env: { OMP_NUM_THREADS: '1', ...env },
    devices: { kind: 'cpu', cores: [0, 1], coresPerRank: 1 },
    stdio: 'pipe',
  });
  const lines: RankLine[] = [];
  let stderr = '';
  for (const r of launched.ranks) {
    r.child.stderr?.on('data', (d: Buffer) => {
      stderr += `[rank ${r.rank}] ${d}`;
    });
    if (r.child.stdout)
      createInterface({ input: r.child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as RankLine));
  }
  const { exitCode } = await launched.exited;
  expect(stderr).toBe('');
  expect(exitCode).toBe(0);
  // Every rank ends with the same weights (the trainer also compares hashes every 5 steps).
  expect(new Set(lines.map((l) => l.hash)).size).toBe(1);
  return lines.find((l) => l.rank === 0)!;
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

/** The fp32 master weights of a bf16 ZeRO run's last checkpoint, assembled from its shard files. */
async function checkpointMasters(output: string): Promise<Float32Array> {
  const dir = latestCheckpoint(output)!.dir;
  const mf = JSON.parse(readFileSync(join(dir, 'zero-manifest.json'), 'utf8'));
  expect(mf.master).toBe(true);
  const out = new Float32Array(mf.numParameters);
  for (const s of mf.shards as { file: string; start: number; end: number }[]) {
    const path = join(dir, s.file);
    const t = (await readSafetensorsHeader(path)).tensors.get('master')!;
    const bytes = readFileSync(path).subarray(t.fileOffset, t.fileOffset + (s.end - s.start) * 4);
    out.set(new Float32Array(Uint8Array.from(bytes).buffer), s.start);
  }
  return out;
}

const maxDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

describe('ZeRO over the shm group', () => {
  it('stages 1 and 2 on 2 ranks reproduce the unsharded 2-rank run bit for bit (same sum order)', async () => {
    const dir = tmp('zero-eq');
    const plain = await train(2, config(join(dir, 'plain'), {}));
    const z1 = await train(2, config(join(dir, 'z1'), { zeroStage: 1 }));
    const z2 = await train(2, config(join(dir, 'z2'), { zeroStage: 2 }));
    expect(plain.step).toBe(20);
    expect(z1.hash).toBe(plain.hash);
    expect(z2.hash).toBe(plain.hash);
    // One rank with two micro-batches adds the gradients in the same order too.
    const one = await train(1, config(join(dir, 'one'), { zeroStage: 2 }));
    expect(one.hash).toBe(plain.hash);
    // The export is one ordinary Hugging Face folder: full weights, no optimizer shards.
    const final = join(dir, 'z2', 'final');
    expect(readdirSync(final).filter((f) => f.includes('optimizer'))).toEqual([]);
    const m = await Model.load(final, { threads: 1 });
    expect(m.weightsHash()).toBe(z2.hash);
    m.dispose();
  }, 240_000);

  it('3 ranks (three one-block shards) match one unsharded rank with three micro-batches, bit for bit', async () => {
    const dir = tmp('zero-3');
    const t = { batchSize: 6, maxSteps: 10 };
    const one = await train(1, config(join(dir, 'one'), t));
    const three = await train(3, config(join(dir, 'three'), { ...t, zeroStage: 2 }));
    expect(three.hash).toBe(one.hash);
  }, 240_000);

  it('within 1e-6 per weight after 20 steps when the gradient sum order differs', async () => {
    const dir = tmp('zero-order');
    // One micro-batch of 4 sums the four examples inside the kernels; two ranks of 2 sum 2 + 2.
    // Adam turns a rounding-level gradient difference on a near-zero gradient into an update
    // difference of up to the learning rate, so the bound is stated at a learning rate: 1e-4,
    // 100x the largest of the paper's search ([3e-7, 1e-6], Appendix), where the weights still
    // move by up to ~1e-3 in 20 steps (so 1e-6 is a tight bound, not a vacuous one).
    const lr = { learningRate: 1e-4 };
    const whole = await train(1, config(join(dir, 'whole'), { ...lr, microBatchSize: 4 }));
    const z2 = await train(2, config(join(dir, 'z2'), { ...lr, zeroStage: 2, microBatchSize: 2 }));
    expect(z2.hash).not.toBe(whole.hash);
    const d = await maxWeightDiff(join(dir, 'whole', 'final'), join(dir, 'z2', 'final'));
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(1e-6);
    const init = join(dir, 'init');
    const m0 = Model.init(model.init as never, { seed: model.seed, threads: 1 });
    await m0.save(init);
    m0.dispose();
    expect(await maxWeightDiff(init, join(dir, 'z2', 'final'))).toBeGreaterThan(5e-4);
  }, 240_000);

  it('checkpoints shards + manifest and resumes on a different rank count (2 -> 1, 1 -> 2)', async () => {
    const dir = tmp('zero-reshard');
    const cfg = (out: string) => config(join(dir, out), { zeroStage: 2, checkpointEvery: 5 });
    const straight = await train(2, cfg('straight'));

    // The stop request is read during the step after 6, so the run checkpoints and stops at 7.
    const stopped = await train(2, cfg('a'), { MPO_TEST_STOP_AT: '6' });
    expect(stopped).toMatchObject({ stopped: true, step: 7 });
    const ck = latestCheckpoint(join(dir, 'a'))!;
    expect(ck.state.step).toBe(7);
    const manifest = JSON.parse(readFileSync(join(ck.dir, 'zero-manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'mpo-zero-adamw', stage: 2, worldSize: 2, step: 7 });
    expect(manifest.shards.map((s: { start: number; end: number }) => [s.start, s.end])).toEqual([
      [0, 131072],
      [131072, manifest.numParameters],
    ]);
    for (const s of manifest.shards) expect(existsSync(join(ck.dir, s.file))).toBe(true);
    expect(existsSync(join(ck.dir, 'optimizer.bin'))).toBe(false);
    // No staging folder is left behind.
    expect(readdirSync(join(dir, 'a', 'checkpoints')).filter((d) => d.includes('tmp'))).toEqual([]);
    const resumed1 = await train(1, cfg('a'));
    expect(resumed1.resumedFrom).toBe(7);
    expect(resumed1.hash).toBe(straight.hash);

    expect(await train(1, cfg('b'), { MPO_TEST_STOP_AT: '6' })).toMatchObject({ stopped: true, step: 7 });
    const resumed2 = await train(2, cfg('b'));
    expect(resumed2.resumedFrom).toBe(7);
    expect(resumed2.hash).toBe(straight.hash);
  }, 300_000);

  it("loads an unsharded run's optimizer.bin and continues it exactly", async () => {
    const { ZeroOptimizer } = await import('../src/zero.js');
    const { mkdirSync } = await import('node:fs');
    const a = Model.init(model.init as never, { seed: 2, threads: 1 });
    const fill = (g: Float32Array, s: number) => {
      for (let i = 0; i < g.length; i++) g[i] = Math.cos(i * 0.01 + s) * 1e-2;
    };
    const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 0.5 };
    for (const s of [1, 2]) {
      fill(a.gradBuffer(), s);
      await a.step(hyper);
    }
    const dir = tmp('zero-full');
    mkdirSync(dir, { recursive: true });
    await a.save(dir);
    await a.saveOptimizer(join(dir, 'optimizer.bin'));
    const b = await Model.load(dir, { threads: 1 });
    const z = new ZeroOptimizer(b, undefined, 2);
    await z.load(dir);
    expect(z.step).toBe(2);
    fill(a.gradBuffer(), 3);
    fill(b.gradBuffer(), 3);
    const ra = await a.step(hyper);
    await z.accumulateShard(true); // stage 2 updates from its gradient shard
    const rb = await z.stepShard(hyper);
    expect(rb.gradNorm).toBe(ra.gradNorm);
    expect(b.weightsHash()).toBe(a.weightsHash());
    a.dispose();
    b.dispose();
  });

  it('fp32, 2 micro-batches per rank: stage 1 is bit-identical; stage 2 (micro-batch order) within 1e-6', async () => {
    const dir = tmp('zero-k2');
    // Learning rate as in the sum-order test above (1e-4; why there).
    const t = { batchSize: 8, microBatchSize: 2, learningRate: 1e-4 };
    const plain = await train(2, config(join(dir, 'plain'), t));
    const z1 = await train(2, config(join(dir, 'z1'), { ...t, zeroStage: 1 }));
    const z2 = await train(2, config(join(dir, 'z2'), { ...t, zeroStage: 2 }));
    expect(z1.hash).toBe(plain.hash);
    // Stage 2 adds (rank 0 + rank 1) per micro-batch, the plain run (mb 1 + mb 2) per rank first.
    expect(z2.hash).not.toBe(plain.hash);
    const d = await maxWeightDiff(join(dir, 'plain', 'final'), join(dir, 'z2', 'final'));
    expect(d).toBeLessThan(1e-6);
  }, 300_000);

  it('stage 2 with unequal micro-batch counts (3 examples on 2 ranks, micro-batch 1): the short rank adds zeros', async () => {
    const dir = tmp('zero-uneven');
    // Rank 0 has two micro-batches and rank 1 one: both must run two reduce-scatter rounds.
    const t = { batchSize: 3, microBatchSize: 1, learningRate: 1e-4, maxSteps: 8 };
    const z1 = await train(2, config(join(dir, 'z1'), { ...t, zeroStage: 1 }));
    const z2 = await train(2, config(join(dir, 'z2'), { ...t, zeroStage: 2 }));
    expect(z2.step).toBe(8);
    // (a + b) + c against (a + c) + b: equal to rounding.
    expect(z2.hash).not.toBe(z1.hash);
    expect(await maxWeightDiff(join(dir, 'z1', 'final'), join(dir, 'z2', 'final'))).toBeLessThan(1e-6);
  }, 300_000);

  it('bf16: sharded fp32 masters on 2 ranks match the unsharded master run, bit for bit and within 1e-6', async () => {
    const dir = tmp('zero-bf16');
    const bf = (out: string, training: Record<string, unknown>) => ({
      ...config(join(dir, out), { learningRate: 1e-4, ...training }),
      dtype: 'bfloat16',
    });
    // One rank: its shard is the whole model, i.e. the unsharded fp32 master beside bf16 weights.
    const whole = await train(1, bf('whole', { zeroStage: 1 }));
    const z1 = await train(2, bf('z1', { zeroStage: 1 }));
    const z2 = await train(2, bf('z2', { zeroStage: 2 }));
    expect(z1.hash).toBe(whole.hash);
    expect(z2.hash).toBe(whole.hash);
    const masters = await checkpointMasters(join(dir, 'whole'));
    expect(await checkpointMasters(join(dir, 'z2'))).toEqual(masters);
    // The forward weights are the masters rounded to bf16, and the masters carry more than that.
    const final = await Model.load(join(dir, 'z2', 'final'), { threads: 1, dtype: 'bfloat16' });
    const rounded = new Float32Array(masters.length);
    roundToBf16(masters, rounded);
    expect(final.paramBuffer()).toEqual(rounded);
    expect(final.weightsHash()).toBe(z2.hash);
    final.dispose();
    expect(maxDiff(masters, rounded)).toBeGreaterThan(0);
    // The first step runs on the weights as loaded, which the reference scores were taken with:
    // its loss is an unsharded bf16 run's to the bit (the policy starts at its reference). ZeRO's
    // bf16 runs store the weights in bf16 (the engine rounds the fp32 init when it loads it), so
    // both start from the same bf16-valued checkpoint here: the forward pass is the same computation.
    const initDir = join(dir, 'init-bf16');
    const m0 = Model.init(model.init as never, { seed: model.seed, threads: 1 });
    await m0.save(initDir, { dtype: 'bfloat16' });
    m0.dispose();
    const fromInit = (out: string, training: Record<string, unknown>) => ({
      ...bf(out, { maxSteps: 1, ...training }),
      model: initDir,
    });
    await train(1, fromInit('first-zero', { zeroStage: 1 }));
    await train(1, fromInit('plain', {}));
    const firstLoss = (out: string) =>
      JSON.parse(readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').split('\n')[0]!).loss;
    expect(firstLoss('first-zero')).toBe(firstLoss('plain'));
    // Two micro-batches per rank. With the engine's bf16 weight storage both stages drain every
    // micro-batch's bf16 gradient into the fp32 shard (the bf16 buffer cannot accumulate to fp32
    // precision), so stage 1 sums in stage 2's order (ranks per micro-batch, then micro-batches)
    // and the masters agree exactly; against one rank with four micro-batches (another order)
    // within 1e-6 (here exactly too: fp32 sums of four bf16 gradients are mostly exact).
    const k2 = { batchSize: 8, microBatchSize: 2 };
    await train(2, bf('k2-z1', { ...k2, zeroStage: 1 }));
    await train(2, bf('k2-z2', { ...k2, zeroStage: 2 }));
    const k2z2 = await checkpointMasters(join(dir, 'k2-z2'));
    expect(maxDiff(await checkpointMasters(join(dir, 'k2-z1')), k2z2)).toBe(0);
    await train(1, bf('k2-one', { ...k2, zeroStage: 2 }));
    expect(maxDiff(await checkpointMasters(join(dir, 'k2-one')), k2z2)).toBeLessThan(1e-6);
  }, 400_000);

  it('bf16: resumes from the sharded masters on a different rank count (2 -> 1)', async () => {
    const dir = tmp('zero-bf16-reshard');
    const cfg = (out: string) => ({
      ...config(join(dir, out), { zeroStage: 2, checkpointEvery: 5 }),
      dtype: 'bfloat16',
    });
    const straight = await train(2, cfg('straight'));
    expect(await train(2, cfg('a'), { MPO_TEST_STOP_AT: '6' })).toMatchObject({ stopped: true, step: 7 });
    const ck = latestCheckpoint(join(dir, 'a'))!;
    const mf = JSON.parse(readFileSync(join(ck.dir, 'zero-manifest.json'), 'utf8'));
    expect(mf).toMatchObject({ stage: 2, worldSize: 2, step: 7, master: true });
    // The checkpoint's masters are not the bf16 weights: resuming from the weights would differ.
    const weights = await Model.load(ck.dir, { threads: 1, dtype: 'bfloat16' });
    expect(maxDiff(await checkpointMasters(join(dir, 'a')), weights.paramBuffer())).toBeGreaterThan(0);
    weights.dispose();
    const resumed = await train(1, cfg('a'));
    expect(resumed.resumedFrom).toBe(7);
    expect(resumed.hash).toBe(straight.hash);
  }, 300_000);
});

describe('ZeRO shards in one process', () => {
  it('roundToBf16 rounds as the engine converts fp32 to bf16 (nearest, ties to even)', async () => {
    const m = Model.init(model.init as never, { seed: 5, threads: 1 });
    const p = m.paramBuffer();
    const bits = new Uint32Array(p.buffer, p.byteOffset, p.length);
    // Values around every rounding case: exact ties (low half 0x8000, both parities), just
    // below/above, tiny and huge magnitudes (overflow to infinity), negatives.
    for (let i = 0; i < p.length; i++) {
      const hi = (0x3c00 + ((i * 7919) % 0x0800)) | (i % 2 ? 0x8000 : 0);
      const lows = [0x8000, 0x7fff, 0x8001, 0x0000, 0xffff, (i * 2654435761) & 0xffff];
      bits[i] = ((hi << 16) | lows[i % lows.length]!) >>> 0;
    }
    bits[0] = 0x7f7fffff; // largest finite: rounds up to +inf
    const dir = tmp('bf16-round');
    await m.save(dir, { dtype: 'bfloat16' });
    const expected = Float32Array.from(p);
    roundToBf16(expected, expected);
    const loaded = await Model.load(dir, { threads: 1 });
    expect(loaded.paramBuffer()).toEqual(expected);
    expect(expected[0]).toBe(Number.POSITIVE_INFINITY);
    m.dispose();
    loaded.dispose();
  });

  it('per rank, master + moments + gradient bytes are 1/N of the unsharded state', () => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const m = Model.init(model.init as never, { seed: 2, threads: 1, dtype });
      const P = m.paramBuffer().length;
      for (const stage of [1, 2] as const) {
        // Bytes per parameter the optimizer holds: moments 8, + master 4 (bf16), + gradient 4 (stage 2).
        const perParam = 8 + (dtype === 'bfloat16' ? 4 : 0) + (stage === 2 ? 4 : 0);
        for (const N of [1, 2, 3]) {
          const held = Array.from({ length: N }, (_, rank) => {
            const b = new ZeroOptimizer(m, silentComm(rank, N), stage).heldBytes();
            return b.master + b.moments + b.gradients;
          });
          // Together the ranks hold the unsharded state exactly once...
          expect(held.reduce((a, b) => a + b, 0)).toBe(perParam * P);
          // ...and the largest rank about 1/N of it (shards are whole 65 536-element norm blocks).
          expect(Math.max(...held)).toBeLessThanOrEqual(perParam * (P / N + 65_536));
          if (N === 1) expect(held[0]).toBe(perParam * P);
        }
      }
      m.dispose();
    }
  });

  it('bf16 weight storage: the engine holds bf16 only; the rank 16/N bytes per parameter', () => {
    const m = Model.init(model.init as never, {
      seed: 2,
      threads: 1,
      dtype: 'bfloat16',
      weightStorage: 'bfloat16',
    });
    const P = m.numParameters;
    for (const stage of [1, 2] as const) {
      for (const N of [1, 2, 3]) {
        const held = Array.from({ length: N }, (_, rank) => {
          const z = new ZeroOptimizer(m, silentComm(rank, N), stage);
          expect(z.bf16Weights).toBe(true);
          const b = z.heldBytes();
          // fp32 master 4 + moments 8 + gradient shard 4 (both stages) per parameter of the slice
          return b.master + b.moments + b.gradients;
        });
        expect(held.reduce((a, b) => a + b, 0)).toBe(16 * P);
      }
    }
    // The engine's own buffers: 2 bytes of weights and 2 of gradient per parameter.
    expect(m.paramBits().byteLength).toBe(2 * P);
    expect(m.gradBits().byteLength).toBe(2 * P);
    m.dispose();
  });

  it('bf16 weight storage: bucketed reduce-scatter (stage 2) and all-reduce (stage 1) give each rank the fp32 sum of the bf16 gradients', async () => {
    // Two ranks in one process over a tiny in-memory group with the shm group's semantics; buckets
    // of one norm block, so each rank's shard (two blocks, and the rest) takes two buckets.
    const N = 2;
    const align = 65_536;
    const models = [0, 1].map(() =>
      Model.init(model.init as never, { seed: 4, threads: 1, dtype: 'bfloat16', weightStorage: 'bfloat16' }),
    );
    const P = models[0]!.numParameters;
    // Gradient bits: varied magnitudes and signs, different per rank.
    const grads = models.map((m, r) => {
      const g = m.gradBits();
      for (let i = 0; i < P; i++)
        g[i] = (0x3a00 + ((i * 37 + r * 11) % 0x0900)) | ((i + r) % 3 === 0 ? 0x8000 : 0);
      return Uint16Array.from(g);
    });
    const f32 = (b: number) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;
    const group = memoryGroup(N);
    for (const stage of [1, 2] as const) {
      const zs = models.map((m, rank) => new ZeroOptimizer(m, group.comm(rank), stage, 1, align));
      await Promise.all(zs.map((z) => z.accumulateShard(true)));
      await Promise.all(zs.map((z) => z.accumulateShard(false))); // the same gradient again: 2x
      for (const z of zs) {
        const shard = z.grads();
        expect(shard.length).toBe(z.end - z.start);
        for (let k = 0; k < shard.length; k += 997) {
          const i = z.start + k;
          const once = f32(grads[0]![i]!) + f32(grads[1]![i]!);
          expect(shard[k]).toBe(Math.fround(Math.fround(once) + Math.fround(once)));
        }
      }
      // The update: every rank ends with every slice, the bf16 rounding of its owner's master.
      const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };
      await Promise.all(zs.map((z) => z.stepShard(hyper)));
      expect(models[1]!.weightsHash()).toBe(models[0]!.weightsHash());
      for (const z of zs) {
        const want = new Uint16Array(z.end - z.start);
        roundToBf16Bits(z.master(), want);
        expect(models[0]!.paramBits().subarray(z.start, z.end)).toEqual(want);
      }
    }
    for (const m of models) m.dispose();
  });
});

/** An in-process group with the shm group's collectives (sums in rank order), for tests. */
function memoryGroup(N: number) {
  type Op = { bufs: Float32Array[]; arrived: number; done: Promise<void>; release: () => void };
  const ops = new Map<string, Op>();
  const counters = Array.from({ length: N }, () => 0);
  const meet = async (rank: number, buf: Float32Array, finish: (bufs: Float32Array[]) => void) => {
    const key = String(counters[rank]!++);
    let op = ops.get(key);
    if (!op) {
      let release = () => {};
      const done = new Promise<void>((r) => {
        release = r;
      });
      op = { bufs: [], arrived: 0, done, release };
      ops.set(key, op);
    }
    op.bufs[rank] = buf;
    if (++op.arrived === N) {
      finish(op.bufs);
      ops.delete(key);
      op.release();
    }
    await op.done;
  };
  const sumInto = (bufs: Float32Array[], dst: Float32Array[], a: number, b: number) => {
    for (let i = a; i < b; i++) {
      let s = bufs[0]![i]!;
      for (let r = 1; r < N; r++) s = Math.fround(s + bufs[r]![i]!);
      for (const d of dst) d[i] = s;
    }
  };
  return {
    comm: (rank: number) => ({
      rank,
      worldSize: N,
      allReduceSum: (buf: Float32Array) => meet(rank, buf, (bufs) => sumInto(bufs, bufs, 0, buf.length)),
      reduceScatterSum: (buf: Float32Array, align: number) =>
        meet(rank, buf, (bufs) => {
          const parts = bufs.map((_, r) => shardRange(buf.length, r, N, align));
          const sums = parts.map(({ start, end }) => {
            const t = new Float32Array(end - start);
            for (let i = start; i < end; i++) {
              let s = bufs[0]![i]!;
              for (let r = 1; r < N; r++) s = Math.fround(s + bufs[r]![i]!);
              t[i - start] = s;
            }
            return t;
          });
          parts.forEach(({ start }, r) => {
            bufs[r]!.set(sums[r]!, start);
          });
        }),
      allGather: (buf: Float32Array, align: number) =>
        meet(rank, buf, (bufs) => {
          for (let r = 0; r < N; r++) {
            const { start, end } = shardRange(buf.length, r, N, align);
            const own = bufs[r]!.slice(start, end);
            for (const d of bufs) d.set(own, start);
          }
        }),
    }),
  };
}
