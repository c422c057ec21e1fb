// Validates `mpo plan` against the peak resident memory of real training steps on this CPU:
//   node packages/trainer/dist/plan-bench.js [--json] [--only A,E]
// Each configuration runs in fresh processes (peak RSS is per process): the process loads the
// engine, runs a tiny warm-up step, records its RSS, builds the model, and runs three optimizer steps of one forward/backward
// over `batch` random sequences of `cutoff` tokens (every position scored, as the plan assumes);
// then it reports VmHWM − the RSS before the model existed. ZeRO configurations run as 2 ranks
// over the shm group and report each rank's figure. Prints a Markdown table (planned vs measured).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { joinGroupFromEnv, launchRanks } from '@mpo/allreduce';
import { type LlamaConfig, Model, toHfConfig } from '@mpo/engine';
import { LORA_TARGETS, planMemory } from './plan.js';
import { ZeroOptimizer } from './zero.js';

interface BenchConfig {
  name: string;
  model: LlamaConfig;
  batch: number;
  cutoff: number;
  zero: 0 | 1 | 2;
  ranks: number;
  /** LoRA rank (adapters on all seven projections, base frozen in fp32). */
  lora?: number;
  /** Compute dtype (default fp32). bf16 with ZeRO runs on the engine's bf16 weight storage, as the trainer does. */
  dtype?: 'fp32' | 'bf16';
}

/** The engine options the trainer uses for a configuration (run.ts modelOptionsOf). */
function engineOptions(c: BenchConfig) {
  if (c.dtype !== 'bf16') return {};
  return {
    dtype: 'bfloat16' as const,
    ...(c.zero > 0 && !c.lora ? { weightStorage: 'bfloat16' as const } : {}),
  };
}

const base: LlamaConfig = {
  architecture: 'LlamaForCausalLM',
  vocabSize: 32000,
  hiddenSize: 512,
  intermediateSize: 1408,
  numHiddenLayers: 8,
  numAttentionHeads: 8,
  numKeyValueHeads: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  attentionBias: false,
  tieWordEmbeddings: false,
  maxPositionEmbeddings: 1024,
};

/** C's model: 16 layers, 113.7M parameters (C's name says 122M). */
const m122: LlamaConfig = {
  ...base,
  numHiddenLayers: 16,
  hiddenSize: 640,
  intermediateSize: 1728,
  numAttentionHeads: 10,
  numKeyValueHeads: 5,
};

/**
 * glibc as configured by default returns freed blocks to the OS, so RSS follows the live tensors
 * (what the plan counts). The engine's malloc tuning (csrc/addon.cpp) instead keeps freed heap
 * memory for speed, which makes RSS a high-water mark of fragmentation that grows step by step;
 * it is switched off here and small blocks go to mmap at a fixed threshold.
 */
const LIVE_BYTES_ENV = { MPO_ENGINE_MALLOC_TUNING: '0', MALLOC_MMAP_THRESHOLD_: '65536' };

export const BENCH_CONFIGS: BenchConfig[] = [
  { name: 'A: 56M, batch 2 x 256, 1 rank', model: base, batch: 2, cutoff: 256, zero: 0, ranks: 1 },
  { name: 'B: 56M, batch 4 x 512, 1 rank', model: base, batch: 4, cutoff: 512, zero: 0, ranks: 1 },
  {
    name: 'D: 56M with 4 layers, batch 8 x 256, 1 rank',
    model: { ...base, numHiddenLayers: 4 },
    batch: 8,
    cutoff: 256,
    zero: 0,
    ranks: 1,
  },
  {
    name: 'C: 122M (16 layers), batch 2 x 256, ZeRO-2 x 2 ranks',
    model: m122,
    batch: 2,
    cutoff: 256,
    zero: 2,
    ranks: 2,
  },
  {
    name: 'E: 56M, LoRA r=16 on all seven projections, batch 4 x 512, 1 rank',
    model: base,
    batch: 4,
    cutoff: 512,
    zero: 0,
    ranks: 1,
    lora: 16,
  },
  // bf16 with ZeRO (weights and gradient in bf16 only, fp32 master + moments + gradient sharded)
  // against the same model trained unsharded in bf16 (fp32 masters whole, bf16 GEMM copies). A
  // short batch keeps the activations (fp32 on this CPU's mixed path, planned at 2 bytes) small
  // beside the training state the two layouts differ in.
  {
    name: 'F: 114M (model C), bf16, batch 1 x 128, ZeRO-2 x 2 ranks',
    model: m122,
    batch: 1,
    cutoff: 128,
    zero: 2,
    ranks: 2,
    dtype: 'bf16',
  },
  {
    name: 'H: 114M (model C), bf16, batch 1 x 128, ZeRO-1 x 2 ranks',
    model: m122,
    batch: 1,
    cutoff: 128,
    zero: 1,
    ranks: 2,
    dtype: 'bf16',
  },
  {
    name: 'G: 114M (model C), bf16, batch 1 x 128, 1 rank, unsharded',
    model: m122,
    batch: 1,
    cutoff: 128,
    zero: 0,
    ranks: 1,
    dtype: 'bf16',
  },
];

function rssBytes(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** Inside a (rank) process: two training steps; prints {peak} in bytes over the pre-model RSS. */
async function child(c: BenchConfig): Promise<void> {
  const comm = c.ranks > 1 ? await joinGroupFromEnv() : undefined;
  // The runtime (libtorch, its thread pools and kernels) is loaded by a tiny warm-up step first:
  // the plan counts the training state, not the process it runs in.
  const warm = Model.init(
    {
      ...c.model,
      vocabSize: 64,
      hiddenSize: 16,
      intermediateSize: 32,
      numHiddenLayers: 1,
      numAttentionHeads: 2,
      numKeyValueHeads: 1,
    },
    { seed: 1, threads: 1, ...(c.dtype === 'bf16' ? { dtype: 'bfloat16' as const } : {}) },
  );
  const w = await warm.score({ sequences: [[1, 2, 3, 4]], promptLengths: [1] }, { grad: true });
  await warm.backward(w.handle!, { sumLogp: [1] });
  await warm.step({ lr: 1e-4 });
  warm.dispose();
  const before = rssBytes('VmRSS');
  const model = Model.init(c.model, { seed: 1, threads: 1, ...engineOptions(c) });
  if (c.lora) model.enableLora({ rank: c.lora, alpha: 2 * c.lora, targetModules: [...LORA_TARGETS] });
  const zero =
    c.zero > 0
      ? new ZeroOptimizer(
          model,
          comm && {
            rank: comm.rank,
            worldSize: comm.worldSize,
            allReduceSum: (b) => comm.allReduce(b, 'sum'),
            reduceScatterSum: (b, a) => comm.reduceScatterSum(b, a),
            allGather: (b, a) => comm.allGather(b, a),
          },
          c.zero as 1 | 2,
        )
      : null;
  const hyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
  for (let step = 0; step < 3; step++) {
    const sequences = Array.from({ length: c.batch }, (_, b) =>
      Array.from({ length: c.cutoff }, (_, i) => (i * 7919 + b * 104729 + step) % c.model.vocabSize),
    );
    model.zeroGrad();
    const r = await model.score({ sequences, promptLengths: sequences.map(() => 1) }, { grad: true });
    await model.backward(r.handle!, { sumLogp: sequences.map(() => 1 / c.batch) });
    if (zero) {
      if (zero.stage === 2 || zero.bf16Weights)
        await zero.accumulateShard(true); // one micro-batch: the step's gradient shard
      else await zero.reduceGradients();
      await zero.stepShard(hyper);
    } else await model.step(hyper);
  }
  process.stdout.write(`${JSON.stringify({ rank: comm?.rank ?? 0, peak: rssBytes('VmHWM') - before })}\n`);
  await comm?.close();
}

async function measure(c: BenchConfig): Promise<number[]> {
  const self = fileURLToPath(import.meta.url);
  const arg = JSON.stringify(c);
  if (c.ranks === 1) {
    const r = spawnSync(process.execPath, [self, '--child', arg], {
      encoding: 'utf8',
      env: { ...process.env, ...LIVE_BYTES_ENV },
    });
    if (r.status !== 0) throw new Error(`${c.name}: ${r.stderr}`);
    return [(JSON.parse(r.stdout.trim()) as { peak: number }).peak];
  }
  const run = launchRanks({
    ranks: c.ranks,
    command: process.execPath,
    args: [self, '--child', arg],
    env: LIVE_BYTES_ENV,
    devices: { kind: 'cpu', cores: [0, 1], coresPerRank: 1 },
    stdio: 'pipe',
  });
  const out: string[] = [];
  for (const r of run.ranks) r.child.stdout?.on('data', (d: Buffer) => out.push(d.toString()));
  const { exitCode } = await run.exited;
  if (exitCode !== 0) throw new Error(`${c.name}: ranks exited with ${exitCode}`);
  return out
    .join('')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { peak: number }).peak);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(JSON.parse(argv[1]!) as BenchConfig);
  const rows = [];
  // --only A,E: run just the configurations whose names start with these letters.
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1]!.split(',') : null;
  for (const c of BENCH_CONFIGS.filter((b) => !only || only.some((o) => b.name.startsWith(`${o}:`)))) {
    const plan = planMemory({
      config: toHfConfig(c.model),
      ranks: c.ranks,
      dtype: c.dtype ?? 'fp32',
      zero: c.zero,
      ...(c.lora ? { lora: c.lora } : {}),
      checkpointing: false,
      batch: c.batch,
      cutoff: c.cutoff,
      deviceMemoryGB: 80,
      reserveGB: 0,
      layout: 'engine',
    });
    const measured = await measure(c);
    const m = Math.max(...measured);
    rows.push({
      name: c.name,
      planned: plan.perRank.total,
      measured: m,
      ratio: plan.perRank.total / m,
      plan,
    });
  }
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const mb = (x: number) => (x / 2 ** 20).toFixed(0);
  process.stdout.write(
    '| configuration | planned MiB (w / g / opt / act / ws) | measured peak MiB | planned / measured |\n',
  );
  process.stdout.write('| --- | --- | --- | --- |\n');
  for (const r of rows) {
    const p = r.plan.perRank;
    process.stdout.write(
      `| ${r.name} | ${mb(r.planned)} (${[p.weights, p.gradients, p.optimizer, p.activations, p.workspace].map(mb).join(' / ')}) | ${mb(r.measured)} | ${r.ratio.toFixed(3)} |\n`,
    );
  }
}

await main();
