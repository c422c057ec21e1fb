#!/usr/bin/env node
// Side-by-side: @mpo/allreduce (shared memory) vs the torch.distributed gloo peer, on this machine.
//   node bench/allreduce-compare.mjs [--ranks 2] [--reps 5]
// Alternates the two (so both see the same background load), takes the median per size over
// the repetitions and prints a Markdown table. Needs `npm run build -w @mpo/allreduce` and
// a python with torch for the reference (bench/reference/gloo_allreduce.py); without one it
// prints our figures only and says so.
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { median, numOpt, root } from './lib.mjs';
import { referenceScript, torchPython } from './reference/python.mjs';

const { allreduceBench } = await import(join(root, 'packages/allreduce/dist/index.js'));
const ranks = numOpt('--ranks', 2);
const reps = numOpt('--reps', 5);
const python = torchPython();
const peer = python ? referenceScript('gloo_allreduce.py') : null;
const sizes = [4 << 10, 256 << 10, 4 << 20, 64 << 20];
const ours = new Map();
const gloo = new Map();
const loads = [];
for (let r = 0; r < reps; r++) {
  loads.push(loadavg()[0]);
  for (const res of await allreduceBench({ ranks, sizes, trials: 3, out: null })) {
    if (!ours.has(res.bytes)) ours.set(res.bytes, []);
    ours.get(res.bytes).push(res);
  }
  if (peer) {
    const p = spawnSync(python, [peer, '--ranks', String(ranks)], {
      encoding: 'utf8',
      env: { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
    });
    for (const line of p.stdout.split('\n')) {
      const m = /bytes=(\d+) time_ms=([\d.]+) algbw_GBps=([\d.]+) busbw_GBps=([\d.]+)/.exec(line);
      if (!m) continue;
      const bytes = Number(m[1]);
      if (!gloo.has(bytes)) gloo.set(bytes, []);
      gloo.get(bytes).push({ timeUs: Number(m[2]) * 1e3, busbwGBps: Number(m[4]) });
    }
    if (p.status !== 0) process.stderr.write(`gloo peer failed: ${p.stderr}\n`);
  }
  process.stderr.write(`rep ${r + 1}/${reps} done (load ${loads.at(-1).toFixed(2)})\n`);
}
const fmt = (x, d = 2) => (x === undefined ? 'n/a' : x.toFixed(d));
console.log(
  `ranks=${ranks}, ${reps} repetitions (medians; all busbw values in brackets), load average ${Math.min(...loads).toFixed(2)}..${Math.max(...loads).toFixed(2)}\n`,
);
console.log(
  '| size | mpo time (µs) | mpo busbw (GB/s) | gloo time (µs) | gloo busbw (GB/s) | speed-up (gloo time / mpo time) |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
for (const b of sizes) {
  const o = ours.get(b) ?? [];
  const g = gloo.get(b) ?? [];
  const ot = median(o.map((x) => x.timeUs));
  const gt = g.length ? median(g.map((x) => x.timeUs)) : undefined;
  const label = b >= 1 << 20 ? `${b >> 20} MiB` : `${b >> 10} KiB`;
  console.log(
    `| ${label} | ${fmt(ot, 1)} | ${fmt(median(o.map((x) => x.busbwGBps)))} [${o.map((x) => x.busbwGBps.toFixed(1)).join(' ')}] | ${fmt(gt, 1)} | ${g.length ? fmt(median(g.map((x) => x.busbwGBps))) : 'n/a'} [${g.map((x) => x.busbwGBps.toFixed(2)).join(' ')}] | ${gt ? `${(gt / ot).toFixed(1)}x` : 'n/a'} |`,
  );
}
