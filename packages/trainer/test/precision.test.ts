// Training precision options: dtype names, activation checkpointing and dynamic loss scaling
// (torch.cuda.amp.GradScaler's arithmetic) through the real training loop on the engine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DynamicLossScaler,
  LOSS_SCALING_DEFAULTS,
  parseTrainConfig,
  runTraining,
  type StepRecord,
} from '../src/index.js';
import { byteEncoders, mpoData, tinyModel, tmp } from './helpers.js';

const config = (out: string, extra: Record<string, unknown> = {}) => ({
  model: tinyModel(3),
  data: { format: 'mpo', path: mpoData, limit: 8 },
  method: 'mpo',
  hyperparameters: { beta: 1.0 },
  cutoff: 64,
  output: out,
  threads: 1,
  training: { batchSize: 4, microBatchSize: 2, learningRate: 1e-3, maxSteps: 4, seed: 5 },
  ...extra,
});

async function train(extra: Record<string, unknown>) {
  const out = tmp('precision');
  const r = await runTraining(parseTrainConfig(config(out, extra)), { encoders: byteEncoders });
  const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepRecord);
  return { hash: r.model.weightsHash(), records };
}

describe('config', () => {
  it('takes fp32/bf16/fp16 as names of the engine dtypes, and loss scaling defaults on for fp16 only', () => {
    const out = tmp('cfg');
    expect(parseTrainConfig(config(out, { dtype: 'bf16' })).dtype).toBe('bfloat16');
    expect(parseTrainConfig(config(out, { dtype: 'fp32' })).lossScaling).toBeUndefined();
    // GradScaler's defaults (torch/cuda/amp/grad_scaler.py): 2^16, x2, x0.5, every 2000 steps.
    expect(parseTrainConfig(config(out, { dtype: 'fp16' })).lossScaling).toEqual({
      initScale: 65536,
      growthFactor: 2,
      backoffFactor: 0.5,
      growthInterval: 2000,
    });
    expect(parseTrainConfig(config(out, { dtype: 'fp16', lossScaling: false })).lossScaling).toBeUndefined();
    expect(parseTrainConfig(config(out, { lossScaling: { initScale: 8 } })).lossScaling?.initScale).toBe(8);
    expect(parseTrainConfig(config(out, { activationCheckpointing: true })).activationCheckpointing).toBe(
      true,
    );
    const bad = () =>
      parseTrainConfig(
        config(out, { dtype: 'fp8', activationCheckpointing: 1, lossScaling: { backoffFactor: 2, x: 1 } }),
      );
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/dtype: must be float32 \(fp32\)/);
    expect(bad).toThrow(/activationCheckpointing: must be true or false/);
    expect(bad).toThrow(/lossScaling.backoffFactor: must be < 1, got 2/);
    expect(bad).toThrow(/lossScaling.x: unknown field/);
  });
});

describe('DynamicLossScaler', () => {
  it('halves on overflow, counts skips, and doubles after growthInterval finite steps', () => {
    const s = new DynamicLossScaler({ ...LOSS_SCALING_DEFAULTS, initScale: 1024, growthInterval: 3 });
    const seen: number[] = [];
    for (const finite of [true, true, false, true, true, true, true]) {
      seen.push(s.scale);
      s.update(finite);
    }
    expect(seen).toEqual([1024, 1024, 1024, 512, 512, 512, 1024]);
    expect(s.scale).toBe(1024);
    expect(s.skipped).toBe(1);
  });
});

describe('loss scaling in the training loop', () => {
  it('with a power-of-two scale (growing every 2 steps) trains bit-identically to no scaling', async () => {
    const plain = await train({});
    const scaled = await train({ lossScaling: { initScale: 1024, growthInterval: 2 } });
    expect(scaled.hash).toBe(plain.hash);
    expect(scaled.records.map((r) => r.metrics['optimizer/loss_scale'])).toEqual([1024, 1024, 2048, 2048]);
    expect(scaled.records.map((r) => r.metrics['optimizer/skipped'])).toEqual([0, 0, 0, 0]);
    expect(scaled.records.map((r) => r.gradNorm)).toEqual(plain.records.map((r) => r.gradNorm));
  });

  it('skips the steps whose scaled gradients overflow, says so in the metrics, and backs off', async () => {
    const plain = await train({ training: { batchSize: 4, microBatchSize: 2, maxSteps: 1, seed: 5 } });
    const one = await train({
      lossScaling: { initScale: 2 ** 200 },
      training: { batchSize: 4, microBatchSize: 2, maxSteps: 1, seed: 5 },
    });
    const untouched = await train({
      training: { batchSize: 4, microBatchSize: 2, maxSteps: 1, seed: 5, learningRate: 1e-30 },
    });
    expect(one.records[0]!.metrics['optimizer/skipped']).toBe(1);
    expect(one.records[0]!.metrics['optimizer/skipped_total']).toBe(1);
    expect(one.hash).not.toBe(plain.hash);
    expect(one.hash).toBe(untouched.hash); // the update was skipped: weights as initialised
    const run = await train({
      lossScaling: { initScale: 2 ** 200 },
      training: { batchSize: 4, microBatchSize: 2, maxSteps: 4, seed: 5 },
    });
    const scales = run.records.map((r) => r.metrics['optimizer/loss_scale']!);
    for (let i = 1; i < scales.length; i++) {
      const prevSkipped = run.records[i - 1]!.metrics['optimizer/skipped'];
      expect(scales[i]).toBe(scales[i - 1]! * (prevSkipped ? 0.5 : 1));
    }
    expect(run.records.every((r) => r.metrics['optimizer/skipped'] === 1)).toBe(true); // 2^200 stays inf
  });
});

describe('loss scaling across a resume', () => {
  it('continues the scaler from the checkpoint: same scales and weights as an uninterrupted run', async () => {
    const extra = { lossScaling: { initScale: 1024, growthInterval: 2 } };
    const whole = await train(extra);
    const out = tmp('resume');
    const cfg = parseTrainConfig(config(out, extra));
    let steps = 0;
    const first = await runTraining(cfg, {
      encoders: byteEncoders,
      hooks: {
        onStep: () => {
          steps += 1;
        },
        shouldStop: () => steps >= 2,
      },
    });
    expect(first.stopped).toBe(true);
    const second = await runTraining(cfg, { encoders: byteEncoders });
    expect(second.model.weightsHash()).toBe(whole.hash);
    const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as StepRecord);
    expect(records.map((r) => r.metrics['optimizer/loss_scale'])).toEqual([1024, 1024, 2048, 2048]);
  });
});

describe('activation checkpointing in a run', () => {
  it('trains to the same weights as without it', async () => {
    const a = await train({});
    const b = await train({ activationCheckpointing: true });
    expect(b.hash).toBe(a.hash);
  });
});
