#!/usr/bin/env node
// Config-S MPO step of @mpo/engine in fp32, bf16 (mixed precision on oneDNN's bf16 GEMM) and fp32
// with activation checkpointing, side by side: each repetition runs every variant once, each in a
// fresh process (`dist/bench-cli.js --gemm-rate`), so they see the same background load. Every run
// also measures the sgemm / bf16 GEMM rate of the step's own GEMM shapes in the same process; the
// table gives medians over repetitions of tokens/s, the step's FLOP/s as a fraction of that sgemm
// rate (and of the bf16 GEMM rate for bf16), and the step's peak memory (RSS rise).
//   node bench/engine-precision.mjs [--reps 5] [--steps 4] [--pairs 8] [--threads 2] [--json]
// Needs `npm run build -w @mpo/engine`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { median, opt, root } from './lib.mjs';

const reps = Number(opt('--reps', '5'));
const base = [
  '--pairs',
  opt('--pairs', '8'),
  '--threads',
  opt('--threads', '2'),
  '--steps',
  opt('--steps', '4'),
];
const cli = join(root, 'packages/engine/dist/bench-cli.js');
if (!existsSync(cli)) throw new Error('build the engine first: npm run build -w @mpo/engine');

const variants = [
  ['fp32', ['--dtype', 'float32']],
  ['bf16', ['--dtype', 'bfloat16']],
  ['fp32 + checkpointing', ['--dtype', 'float32', '--checkpointing']],
];
const runs = new Map(variants.map(([name]) => [name, []]));
const loads = [];
for (let r = 0; r < reps; r++) {
  for (const [name, extra] of variants) {
    loads.push(loadavg()[0]);
    const p = spawnSync(process.execPath, [cli, ...base, ...extra, '--json', '--gemm-rate'], {
      encoding: 'utf8',
    });
    if (p.status !== 0) throw new Error(`${name}: ${p.stderr}`);
    runs.get(name).push(JSON.parse(p.stdout.trim().split('\n').pop()));
  }
}
const rows = variants.map(([name]) => {
  const rs = runs.get(name);
  const m = (k) => median(rs.map((x) => x[k]));
  return {
    variant: name,
    tokensPerSec: Math.round(m('tokensPerSec')),
    fractionOfSgemm: Number(m('fractionOfSgemm').toFixed(3)),
    fractionOfOwnGemm: Number(m('fractionOfOwnGemm').toFixed(3)),
    sgemmGflops: Number(m('sgemmGflops').toFixed(1)),
    bf16GemmGflops: Number(m('bf16GemmGflops').toFixed(1)),
    stepMemoryMiB: Math.round(m('stepMemoryBytes') / 2 ** 20),
    ratioToFp32: 0,
  };
});
for (const r of rows) r.ratioToFp32 = Number((r.tokensPerSec / rows[0].tokensPerSec).toFixed(2));
// Per repetition ratios (same background load within a repetition).
const pairRatio = median(runs.get('bf16').map((b, i) => b.tokensPerSec / runs.get('fp32')[i].tokensPerSec));
const summary = {
  reps,
  loadAvgMedian: Number(median(loads).toFixed(1)),
  bf16OverFp32PerRep: Number(pairRatio.toFixed(2)),
};
if (args.includes('--json')) {
  for (const r of rows) console.log(JSON.stringify(r));
  console.log(JSON.stringify(summary));
} else {
  console.log(
    '| variant | tokens/s | vs fp32 | step FLOP/s / sgemm | / own GEMM | sgemm GFLOP/s | bf16 GEMM GFLOP/s | step memory MiB |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows)
    console.log(
      `| ${r.variant} | ${r.tokensPerSec} | ${r.ratioToFp32}x | ${(100 * r.fractionOfSgemm).toFixed(1)}% | ${(100 * r.fractionOfOwnGemm).toFixed(1)}% | ${r.sgemmGflops} | ${r.bf16GemmGflops} | ${r.stepMemoryMiB} |`,
    );
  console.log(`\n${JSON.stringify(summary)}`);
}
