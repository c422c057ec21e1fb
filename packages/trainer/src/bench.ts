#!/usr/bin/env node
// The MPO step on "config S" through the real trainer loop, split into data,
// forward, objective, backward, accumulate, optimizer (StepRecord.timing).
// Everything outside the engine (data + objective + accumulate + loop overhead)
// should stay under 5% of the step.
// Usage: npm run bench -w @mpo/trainer -- [--pairs 8] [--micro 8] [--threads 2] [--steps 6] [--json]
//   [--pooling mean-unmasked|mean|last] (MPO's L2 pooling; default the objective's, the official padded-pair mean)
// Data-parallel: mpo launch --ranks 2 -- node packages/trainer/dist/bench.js --threads 1 --micro 4
// (--pairs is the global batch; each rank takes its shard; rank 0 reports global tokens/s).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CONFIG_S, Model } from '@mpo/engine';
import { getObjective } from '@mpo/objectives';
import { mulberry32 } from '@mpo/util';
import { trainLoop } from './loop.js';
import type { TrainableModel } from './model.js';
import { computeReference } from './reference.js';
import type { Communicator, StepRecord, TrainExample } from './types.js';

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '8' },
    micro: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '6' },
    json: { type: 'boolean', default: false },
    pooling: { type: 'string' },
  },
});
const hyperparameters = values.pooling ? { pooling: values.pooling } : {};
const pairs = Number(values.pairs);
const threads = Number(values.threads);
const steps = Number(values.steps);
const rand = mulberry32(1);
const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 256));
// Sequence 256 = prompt 64 + response 192, for all four sequences of a pair.
const pair = () => ({ prompt: ids(64), chosen: ids(192), rejected: ids(192) });
const examples: TrainExample[] = Array.from({ length: pairs * (steps + 1) }, (_, i) => ({
  id: `x${i}`,
  lang: 'sw',
  target: pair(),
  dominant: pair(),
}));
let comm: (Communicator & { close(): Promise<void> }) | undefined;
if (Number(process.env.WORLD_SIZE ?? '1') > 1) {
  const { joinGroupFromEnv } = await import('@mpo/allreduce');
  const g = await joinGroupFromEnv();
  comm = {
    rank: g.rank,
    worldSize: g.worldSize,
    allReduceSum: (b) => g.allReduce(b, 'sum'),
    close: () => g.close(),
  };
}
const objective = getObjective('mpo');
const model = Model.init(CONFIG_S, { seed: 1, threads });
const reference = await computeReference(
  model as unknown as TrainableModel,
  examples,
  objective.requirements(hyperparameters).reference,
  pairs,
);
const out = mkdtempSync(join(tmpdir(), 'mpo-bench-trainer-'));
const records: StepRecord[] = [];
await trainLoop({
  examples,
  objective,
  hyperparameters,
  training: {
    epochs: 1,
    maxSteps: steps + 1,
    batchSize: pairs,
    microBatchSize: Number(values.micro),
    learningRate: 1e-4,
    warmupRatio: 0,
    weightDecay: 0,
    maxGradNorm: 1,
    adamBeta1: 0.9,
    adamBeta2: 0.999,
    adamEps: 1e-8,
    seed: 1,
    checkpointEvery: 0,
    keepCheckpoints: 1,
  },
  output: out,
  model: model as unknown as TrainableModel,
  loadFrom: async () => model as unknown as TrainableModel,
  reference,
  configHash: 'bench',
  ...(comm ? { comm } : {}),
  hooks: { onStep: (r) => void records.push(r) },
});
await comm?.close();
if ((comm?.rank ?? 0) !== 0) process.exit(0);
rmSync(out, { recursive: true, force: true });
const measured = records.slice(1); // the first step warms up
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const keys = Object.keys(measured[0]!.timing);
const split = Object.fromEntries(keys.map((k) => [k, median(measured.map((r) => r.timing[k]!))]));
const step = median(measured.map((r) => r.seconds));
// Per step: what is not forward, backward or optimizer (all engine calls) is ours.
const outsideShare = median(
  measured.map((r) => (r.seconds - r.timing.forward! - r.timing.backward! - r.timing.optimizer!) / r.seconds),
);
const result = {
  pooling: values.pooling ?? (objective.defaults as { pooling: string }).pooling,
  pairs,
  microBatch: Number(values.micro),
  threads,
  ranks: comm?.worldSize ?? 1,
  secondsPerStep: Number(step.toFixed(4)),
  tokensPerSec: Math.round((4 * pairs * 256) / step),
  split: Object.fromEntries(Object.entries(split).map(([k, v]) => [k, Number(v.toFixed(4))])),
  outsideEngineShare: Number(outsideShare.toFixed(4)),
};
if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  process.stdout.write(
    `MPO step, config S, ${pairs} pairs (micro-batch ${values.micro}), ${threads} threads: ${step.toFixed(3)} s/step, ${result.tokensPerSec} tokens/s\n`,
  );
  for (const [k, v] of Object.entries(split))
    process.stdout.write(
      `  ${k.padEnd(10)} ${(v * 1000).toFixed(1).padStart(8)} ms  ${((100 * v) / step).toFixed(1).padStart(5)}%\n`,
    );
  process.stdout.write(
    `  outside the engine (data, objective, accumulate, loop): ${(100 * result.outsideEngineShare).toFixed(2)}%\n`,
  );
}
