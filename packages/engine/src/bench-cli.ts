#!/usr/bin/env node
// npm run bench -w @mpo/engine -- [--pairs 8] [--threads 2] [--steps 5] [--dtype float32] [--device cpu]
//   [--checkpointing] [--gemm-rate] [--json] [--matrix]
// --gemm-rate: also measure the sgemm (and bf16 GEMM) rate of the step's own GEMM shapes in the same
// process and report the step's FLOP/s as a fraction of it (fractionOfSgemm).
// Prints one JSON line per configuration; the last line is {"tokensPerSec","mfu","secondsPerStep",...}.
import { parseArgs } from 'node:util';
import { BENCH_ARG_OPTIONS, type BenchResult, benchEngine } from './bench.js';
import type { Device, Dtype } from './model.js';

const { values } = parseArgs({
  options: {
    ...BENCH_ARG_OPTIONS,
    seq: { type: 'string', default: '256' },
    checkpointing: { type: 'boolean', default: false },
    'gemm-rate': { type: 'boolean', default: false },
    matrix: { type: 'boolean', default: false },
  },
});
const int = (s: string, name: string) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};

const line = (r: BenchResult) =>
  JSON.stringify({
    tokensPerSec: Math.round(r.tokensPerSec),
    mfu: Number(r.mfu.toFixed(4)),
    secondsPerStep: Number(r.secondsPerStep.toFixed(4)),
    pairs: r.pairs,
    threads: r.threads,
    dtype: r.dtype,
    device: r.device,
    steps: r.steps,
    numParameters: r.numParameters,
    activationCheckpointing: r.activationCheckpointing,
    stepMemoryBytes: r.peakRssBytes - r.rssBeforeStepsBytes,
    peakRssBytes: r.peakRssBytes,
    ...(r.sgemmFlops !== undefined
      ? {
          sgemmGflops: Number((r.sgemmFlops / 1e9).toFixed(1)),
          fractionOfSgemm: Number(r.fractionOfSgemm!.toFixed(4)),
          fractionOfOwnGemm: Number(r.fractionOfOwnGemm!.toFixed(4)),
        }
      : {}),
    ...(r.bf16GemmFlops !== undefined ? { bf16GemmGflops: Number((r.bf16GemmFlops / 1e9).toFixed(1)) } : {}),
  });

const base = {
  steps: int(values.steps!, 'steps'),
  dtype: values.dtype as Dtype,
  device: values.device as Device,
  seqLen: int(values.seq!, 'seq'),
  activationCheckpointing: values.checkpointing!,
  gemmRate: values['gemm-rate']!,
};
// --matrix (what the npm script passes) runs the grid unless --pairs/--threads are given.
const explicit = process.argv.some((a) => /^--(pairs|threads)(=|$)/.test(a));
const grid =
  values.matrix && !explicit
    ? [
        [1, 1],
        [1, 2],
        [8, 1],
        [8, 2],
      ]
    : [[int(values.pairs!, 'pairs'), int(values.threads!, 'threads')]];
for (const [pairs, threads] of grid) {
  const r = await benchEngine({ ...base, pairs: pairs!, threads: threads! });
  if (!values.json) {
    process.stderr.write(
      `config S ${r.dtype} ${r.device} pairs=${r.pairs} threads=${r.threads}: ${r.tokensPerSec.toFixed(0)} tokens/s, ` +
        `${r.secondsPerStep.toFixed(3)} s/step (median of ${r.steps}), MFU ${(100 * r.mfu).toFixed(1)}% of 440 GFLOP/s\n`,
    );
  }
  process.stdout.write(`${line(r)}\n`);
}
