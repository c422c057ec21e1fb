// Step metrics are means over every example of the global batch: per-language ones are sums and counts (not
// micro-batch-weighted means), and with several ranks every metric is reduced across ranks (not rank 0's shard).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getObjective } from '@mpo/objectives';
import { describe, expect, it } from 'vitest';
import { type TrainingParams, trainLoop } from '../src/index.js';
import { MetricSums } from '../src/metrics.js';
import type { ScoreBatch, TrainableModel } from '../src/model.js';
import type { Communicator, StepRecord, TrainExample } from '../src/types.js';
import { tmp } from './helpers.js';

/**
 * A model whose log-probs are written in the data: every response token of a sequence has log-prob −r/100, r the
 * response's first token, so avg log π(y) = −r/100 and RG = (r_l − r_w)/100. Gradients are not computed.
 */
function fakeModel(): TrainableModel {
  let handles = 0;
  return {
    async score(batch: ScoreBatch) {
      const n = batch.sequences.length;
      const sumLogp = new Float64Array(n);
      const tokens = new Int32Array(n);
      batch.sequences.forEach((s, i) => {
        const p = batch.promptLengths[i]!;
        tokens[i] = s.length - p;
        sumLogp[i] = (-tokens[i]! * s[p]!) / 100;
      });
      return { n, hiddenSize: 1, sumLogp, tokens, handle: ++handles };
    },
    async backward() {},
    release() {},
    zeroGrad() {},
    gradBuffer: () => new Float32Array(2),
    step: async () => ({ gradNorm: 0 }),
    weightsHash: () => '0'.repeat(64),
    async save(dir: string) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'weights'), 'x');
    },
    async saveOptimizer(path: string) {
      writeFileSync(path, 'x');
    },
    async loadOptimizer() {},
  };
}

/** An example whose target pair has RG = (rejected − chosen)/100 under fakeModel. */
const example = (id: string, lang: string, chosen: number, rejected: number): TrainExample => ({
  id,
  lang,
  target: { prompt: [1, 2], chosen: [chosen, 3, 4], rejected: [rejected, 5] },
});

// One ja example (RG −0.25) among three en ones (RG 0.25, 0.5, 0.75).
const examples = [
  example('a', 'ja', 35, 10),
  example('b', 'en', 10, 35),
  example('c', 'en', 10, 60),
  example('d', 'en', 10, 85),
];

const training = (micro: number): TrainingParams => ({
  epochs: 1,
  maxSteps: 1,
  batchSize: 4,
  microBatchSize: micro,
  learningRate: 1e-3,
  warmupRatio: 0,
  weightDecay: 0,
  maxGradNorm: 1,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEps: 1e-8,
  seed: 3,
  checkpointEvery: 0,
  keepCheckpoints: 1,
});

async function run(micro: number, comm?: Communicator): Promise<StepRecord> {
  const records: StepRecord[] = [];
  const model = fakeModel();
  await trainLoop({
    examples,
    objective: getObjective('simpo'),
    hyperparameters: {},
    training: training(micro),
    output: tmp(`metrics-${micro}-${comm?.rank ?? 's'}`),
    loadFrom: async () => model,
    model,
    reference: {},
    configHash: 'test',
    ...(comm ? { comm } : {}),
    hooks: { onStep: (r) => void records.push(r) },
  });
  return records[0]!;
}

/** `world` in-process ranks whose allReduceSum waits for all of them and sums in rank order. */
function localGroup(world: number): Communicator[] {
  let bufs: Float32Array[] = [];
  let waiting: Array<() => void> = [];
  return Array.from({ length: world }, (_, rank) => ({
    rank,
    worldSize: world,
    allReduceSum(buf: Float32Array) {
      return new Promise<void>((resolve) => {
        bufs[rank] = buf;
        waiting.push(resolve);
        if (waiting.length < world) return;
        const sum = new Float32Array(buf.length);
        for (const b of bufs) for (let i = 0; i < sum.length; i++) sum[i]! += b[i]!;
        for (const b of bufs) b.set(sum);
        const done = waiting;
        bufs = [];
        waiting = [];
        for (const r of done) r();
      });
    },
  }));
}

describe('per-language metrics are sums and counts', () => {
  it('a language in one micro-batch of two logs its own mean (−0.250, not −0.125)', async () => {
    for (const micro of [1, 2, 4]) {
      const r = await run(micro);
      expect(r.metrics['rg/target/ja'], `micro ${micro}`).toBeCloseTo(-0.25, 12);
      expect(r.metrics['rg/target/en'], `micro ${micro}`).toBeCloseTo(0.5, 12);
      expect(r.metrics['rg/target'], `micro ${micro}`).toBeCloseTo(0.3125, 12);
      expect(r.rgByLanguage).toEqual({ en: expect.closeTo(0.5, 12), ja: expect.closeTo(-0.25, 12) });
      expect(r.rgTarget).toBeCloseTo(0.3125, 12);
    }
  });
});

describe('with several ranks every logged metric is reduced across ranks', () => {
  it('2 ranks log the metrics of the whole global batch, as 1 rank does', async () => {
    const single = await run(2);
    const [r0, r1] = await Promise.all(localGroup(2).map((c) => run(1, c)));
    for (const r of [r0!, r1!]) {
      expect(
        Object.keys(r.metrics)
          .filter((k) => !k.startsWith('allreduce/'))
          .sort(),
      ).toEqual(Object.keys(single.metrics).sort());
      for (const [k, v] of Object.entries(single.metrics)) expect(r.metrics[k], k).toBeCloseTo(v, 6);
      expect(r.metrics['rg/target/ja']).toBeCloseTo(-0.25, 6);
      expect(r.rgByLanguage.ja).toBeCloseTo(-0.25, 6);
      expect(r.rgTarget).toBeCloseTo(0.3125, 6);
      expect(r.loss).toBeCloseTo(single.loss, 6);
    }
  });
});

describe('MetricSums', () => {
  it('weights each metric by its own count and keeps a float64 sum through a float32 all-reduce', async () => {
    const [c0, c1] = localGroup(2);
    const a = new MetricSums();
    const b = new MetricSums();
    a.addAll({ loss: 1, 'rg/target/ja': -0.25 }, { 'rg/target/ja': 1 }, 2);
    a.addAll({ loss: 3 }, undefined, 2);
    b.add('loss', 1 + 1e-9, 4);
    b.add('only-on-rank-1', 0.1, 1);
    await Promise.all([a.reduce(c0!), b.reduce(c1!)]);
    for (const m of [a.means(), b.means()]) {
      expect(m['rg/target/ja']).toBe(-0.25);
      // (1·2 + 3·2 + (1 + 1e-9)·4) / 8 = 1.5 + 5e-10, beyond float32's resolution
      expect(Math.abs(m.loss! - (1.5 + 5e-10))).toBeLessThan(1e-14);
      expect(m['only-on-rank-1']).toBeCloseTo(0.1, 7);
    }
  });
});
