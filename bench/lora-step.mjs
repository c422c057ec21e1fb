#!/usr/bin/env node
// Config-S MPO step (packages/engine bench.ts shapes): full fine-tuning vs LoRA, side by side.
//   node bench/lora-step.mjs [--reps 5] [--pairs 4] [--threads 2]
// Each repetition runs one step of every variant in turn (so all see the same background load);
// prints the median seconds per step, the ratio to full fine-tuning and the trainable parameters
// (AdamW state = 8 bytes each). Needs `npm run build -w @mpo/engine`.
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { median, numOpt, root } from './lib.mjs';

const { CONFIG_S, Model, LORA_TARGET_MODULES } = await import(join(root, 'packages/engine/dist/index.js'));
const reps = numOpt('--reps', 5);
const pairs = numOpt('--pairs', 4);
const threads = numOpt('--threads', 2);
const T = 256;
let seed = 1;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const seqs = () =>
  Array.from({ length: 2 * pairs }, () =>
    Array.from({ length: T }, () => Math.floor(rnd() * CONFIG_S.vocabSize)),
  );
const target = seqs();
const source = seqs();
const promptLengths = target.map(() => T / 4);
const gLogp = Array.from({ length: 2 * pairs }, () => rnd() - 0.5);
const gHidden = Float32Array.from({ length: 2 * pairs * CONFIG_S.hiddenSize }, () => (rnd() - 0.5) * 1e-2);

const variants = [
  { name: 'full fine-tuning', lora: null },
  {
    name: 'LoRA r=16, all seven projections',
    lora: { rank: 16, alpha: 32, targetModules: [...LORA_TARGET_MODULES] },
  },
  { name: 'LoRA r=16, q_proj + v_proj', lora: { rank: 16, alpha: 32, targetModules: ['q_proj', 'v_proj'] } },
  {
    name: 'LoRA r=16, all seven, dropout 0.05',
    lora: { rank: 16, alpha: 32, dropout: 0.05, targetModules: [...LORA_TARGET_MODULES] },
  },
];
for (const v of variants) {
  v.model = Model.init(CONFIG_S, { seed: 0, threads });
  if (v.lora) v.model.enableLora(v.lora);
  v.times = [];
}
const step = async (m) => {
  m.zeroGrad();
  const t = await m.score({ sequences: target, promptLengths }, { grad: true });
  await m.backward(t.handle, { sumLogp: gLogp });
  const s = await m.score(
    { sequences: source, promptLengths },
    { grad: true, lmHead: false, pooling: ['mean'] },
  );
  await m.backward(s.handle, { meanHidden: gHidden });
  await m.step({ lr: 1e-5 });
};
for (const v of variants) await step(v.model); // warm-up
const load0 = loadavg()[0];
for (let r = 0; r < reps; r++) {
  for (const v of variants) {
    const t0 = process.hrtime.bigint();
    await step(v.model);
    v.times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
}
const full = median(variants[0].times);
console.log(
  `config S, ${pairs} pairs x 4 sequences x ${T} tokens, ${threads} threads, ${reps} reps, load average ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`,
);
console.log('| variant | s/step (median) | vs full | trainable parameters | AdamW state |');
console.log('| --- | --- | --- | --- | --- |');
for (const v of variants) {
  const s = median(v.times);
  const p = v.model.numParameters;
  console.log(
    `| ${v.name} | ${s.toFixed(3)} | ${(s / full).toFixed(2)} | ${p.toLocaleString('en')} | ${((8 * p) / 1e6).toFixed(2)} MB |`,
  );
  v.model.dispose();
}
