#!/usr/bin/env node
// Side-by-side: @mpo/engine's config-S MPO step vs the same step in PyTorch (bench/reference/torch_mpo_step.py).
//   node bench/engine-vs-torch.mjs [--reps 5] [--steps 5] [--grid 1x1,1x2,8x1,8x2] [--wait-load 1.0]
// grid entries are PAIRSxTHREADS. Each repetition runs ours then the peer, each in a fresh process,
// so both see the same background load; the table reports the median over repetitions (and the
// best run). --wait-load L waits (up to 2 min) before each run until the 1-minute load average is
// below L: the machine has 2 cores shared with other work, so figures are noisy.
// Needs `npm run build -w @mpo/engine`; the reference needs a python with torch (Debian's python3-torch):
// without one the table shows the engine's figures only and says so.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { median, opt, root } from './lib.mjs';
import { referenceScript, torchPython } from './reference/python.mjs';

const reps = Number(opt('--reps', '5'));
const steps = Number(opt('--steps', '5'));
const waitLoad = Number(opt('--wait-load', '0'));
const grid = opt('--grid', '1x1,1x2,8x1,8x2')
  .split(',')
  .map((g) => g.split('x').map(Number));
const cli = join(root, 'packages/engine/dist/bench-cli.js');
const python = torchPython();
const peer = python ? referenceScript('torch_mpo_step.py') : null;
if (!existsSync(cli)) throw new Error('build the engine first: npm run build -w @mpo/engine');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function quiet() {
  if (!waitLoad) return;
  const t0 = Date.now();
  while (loadavg()[0] > waitLoad && Date.now() - t0 < 120_000) await sleep(2000);
}

function runOurs(pairs, threads) {
  const r = spawnSync(
    process.execPath,
    [cli, '--pairs', pairs, '--threads', threads, '--steps', steps, '--json'].map(String),
    {
      encoding: 'utf8',
    },
  );
  const last = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !last) throw new Error(`engine bench failed: ${r.stderr}`);
  return JSON.parse(last).tokensPerSec;
}
function runPeer(pairs, threads) {
  if (!peer) return Number.NaN;
  const env = { ...process.env, OPENBLAS_NUM_THREADS: '1' };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(python, [peer, '--pairs', pairs, '--threads', threads, '--steps', steps].map(String), {
    encoding: 'utf8',
    env,
  });
  const m = /tokens\/s=(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`peer failed: ${r.stderr || r.stdout}`);
  return Number(m[1]);
}

const rows = [];
for (const [pairs, threads] of grid) {
  const ours = [];
  const torch = [];
  const loads = [];
  for (let i = 0; i < reps; i++) {
    await quiet();
    loads.push(loadavg()[0]);
    ours.push(runOurs(pairs, threads));
    await quiet();
    torch.push(runPeer(pairs, threads));
  }
  const o = median(ours);
  const t = median(torch);
  rows.push({
    pairs,
    threads,
    o,
    t,
    oBest: Math.max(...ours),
    tBest: Math.max(...torch),
    load: median(loads),
  });
  process.stderr.write(
    `pairs=${pairs} threads=${threads}: engine ${ours.join(' ')} | torch ${torch.join(' ')}\n`,
  );
}
const flopsPerToken = 6 * 3426560;
console.log(
  `config S, fp32, median of ${reps} runs x ${steps} steps (best run in parentheses); MFU vs 440 GFLOP/s`,
);
console.log(
  '| pairs | threads | engine tokens/s | engine MFU | PyTorch tokens/s | engine / PyTorch | load avg |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const mfu = (100 * r.o * flopsPerToken) / 440e9;
  console.log(
    `| ${r.pairs} | ${r.threads} | ${Math.round(r.o)} (${Math.round(r.oBest)}) | ${mfu.toFixed(1)}% | ${peer ? `${Math.round(r.t)} (${Math.round(r.tBest)})` : 'not run (no torch)'} | ${peer ? `${(r.o / r.t).toFixed(2)}x` : 'n/a'} | ${r.load.toFixed(1)} |`,
  );
}
