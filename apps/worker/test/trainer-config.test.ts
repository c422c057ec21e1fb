// trainer-config.ts: a job's payload becomes the trainer's config (paths kept inside the roots, every problem
// listed). The LoRA part came from lora-config.test.ts; the other modules' parts of the old units.test.ts
// are in files named after them.
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrainConfig } from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { buildTrainConfig, guessDataFormat, JobConfigError } from '../src/trainer-config.js';
import { RUN_ID, rootsOf, scratch, TRIAL_ID, trainData } from './helpers.js';

describe('payload → trainer config', () => {
  const s = scratch('config');
  const roots = rootsOf(s);

  it('maps every training field, puts the output under the artifact root, and validates', () => {
    const plan = buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { training: { steps: 30, seed: 7 } }), roots);
    expect(plan.output).toBe(join(s.artifactRoot, RUN_ID, TRIAL_ID));
    expect(plan.config).toMatchObject({
      model: { init: { hiddenSize: 32 }, seed: 1 },
      data: {
        path: 'builtin:golden-pairs',
        format: 'pretokenized',
        dominantLanguage: 'en',
        languages: ['en', 'zh', 'ko', 'ar', 'bn', 'sw'],
      },
      method: 'dpo',
      hyperparameters: { beta: 0.1 },
      training: {
        maxSteps: 30,
        batchSize: 2,
        microBatchSize: 1,
        learningRate: 1e-3,
        warmupRatio: 0.1,
        seed: 7,
        checkpointEvery: 10,
      },
      cutoff: 64,
      output: plan.output,
      threads: 1,
      device: 'cpu',
    });
    expect(plan.config.eval).toBeUndefined();
  });

  it('is the same on every agent (what a resume hash covers depends on the payload only)', () => {
    const d = trainData(RUN_ID, TRIAL_ID, { slots: { device: 'cpu', count: 2 } });
    expect(buildTrainConfig(d, roots)).toEqual(buildTrainConfig(d, roots));
    const gpu = buildTrainConfig({ ...d, slots: { device: 'gpu', count: 2 } }, roots, { gpuRankThreads: 3 });
    expect(gpu.config).toMatchObject({ device: 'cuda:0', threads: 3 });
  });

  it("passes the spec's dtype and activation checkpointing to the trainer, which accepts them", () => {
    const plan = buildTrainConfig(
      trainData(RUN_ID, TRIAL_ID, { training: { dtype: 'bf16', activationCheckpointing: true } }),
      roots,
    );
    expect(plan.config).toMatchObject({ dtype: 'bf16', activationCheckpointing: true });
    expect(parseTrainConfig(structuredClone(plan.config), plan.output)).toMatchObject({
      dtype: 'bfloat16',
      activationCheckpointing: true,
    });
    const plain = buildTrainConfig(trainData(RUN_ID, TRIAL_ID), roots);
    expect(plain.config.dtype).toBeUndefined();
    expect(plain.config.activationCheckpointing).toBeUndefined();
  });

  it('evaluates at the ASHA rungs, and whenever the objective is a held-out metric', () => {
    const asha = {
      rungs: [5, 15],
      maxSteps: 45,
      reductionFactor: 3,
      metric: 'heldout/reward_gap_mean',
      mode: 'max' as const,
    };
    const plan = buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { asha, totalSteps: 45 }), roots);
    expect(plan.config.eval).toEqual({ at: [5, 15], every: 0 });
    expect((plan.config.training as { maxSteps: number }).maxSteps).toBe(45);
    const heldout = buildTrainConfig(
      trainData(RUN_ID, TRIAL_ID, { objective: { metric: 'heldout/reward_gap:zh', mode: 'max' } }),
      roots,
    );
    expect(heldout.config.eval).toEqual({ at: [], every: 0 });
  });

  it('keeps paths inside the roots, symlinks included', () => {
    const bad = (model: string) =>
      buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { model: { kind: 'path', path: model } }), roots);
    expect(() => bad('../../etc/passwd')).toThrow(JobConfigError);
    expect(() => bad('missing-model')).toThrow(/does not exist/);
    symlinkSync('/etc', join(s.modelRoot, 'escape'));
    expect(() => bad('escape/hostname')).toThrow(/outside the root/);
    expect(() =>
      buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { data: [{ kind: 'path', path: '../x.jsonl' }] }), roots),
    ).toThrow(JobConfigError);
  });

  it('opens data under the data root and guesses its format', () => {
    const golden = readFileSync(
      join(import.meta.dirname, '../../../packages/engine/test/fixtures/golden-llama/pairs.jsonl'),
    );
    writeFileSync(join(s.dataRoot, 'pairs.jsonl'), golden);
    writeFileSync(join(s.dataRoot, 'mpo.json'), '[{"source_chosen": "x"}]');
    writeFileSync(join(s.dataRoot, 'sft.json'), '[{"instruction": "x", "output": "y"}]');
    const plan = buildTrainConfig(
      trainData(RUN_ID, TRIAL_ID, { data: [{ kind: 'path', path: 'pairs.jsonl' }] }),
      roots,
    );
    expect(plan.config.data).toMatchObject({ path: join(s.dataRoot, 'pairs.jsonl'), format: 'pretokenized' });
    expect(guessDataFormat(join(s.dataRoot, 'mpo.json'))).toBe('mpo');
    expect(guessDataFormat(join(s.dataRoot, 'sft.json'))).toBe('alpaca');
  });

  it('lists every problem of a config the trainer would reject', () => {
    const d = trainData(RUN_ID, TRIAL_ID, { method: 'nope', training: { microBatch: 4, batchSize: 2 } });
    expect(() => buildTrainConfig(d, roots)).toThrow(/method: must be one of[\s\S]*microBatchSize/);
    expect(() =>
      buildTrainConfig(
        trainData(RUN_ID, TRIAL_ID, { model: { kind: 'builtin', id: 'no-such-model' } }),
        roots,
      ),
    ).toThrow(/unknown builtin model builtin:no-such-model/);
    expect(() =>
      buildTrainConfig(
        trainData(RUN_ID, TRIAL_ID, {
          data: [
            { kind: 'builtin', id: 'golden-pairs' },
            { kind: 'builtin', id: 'golden-pairs' },
          ],
        }),
        roots,
      ),
    ).toThrow(/one data source per trial/);
  });
});

describe('payload → trainer config: lora', () => {
  const s = scratch('lora-config');
  const roots = rootsOf(s);

  it('passes training.lora through as the config lora field', () => {
    const lora = { rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'o_proj'] };
    const plan = buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { training: { steps: 10, lora } }), roots);
    expect(plan.config.lora).toEqual(lora);
    expect(
      buildTrainConfig(trainData(RUN_ID, TRIAL_ID, { training: { steps: 10 } }), roots).config.lora,
    ).toBeUndefined();
  });

  it("fails the job with the trainer's problem list when lora is wrong", () => {
    const bad = trainData(RUN_ID, TRIAL_ID, { training: { steps: 10, lora: { rank: 0 } } });
    expect(() => buildTrainConfig(bad, roots)).toThrow(JobConfigError);
    expect(() => buildTrainConfig(bad, roots)).toThrow(/lora\.rank/);
  });
});
