// What both synthetic testbeds (testbed.ts, transfer-testbed.ts) share in their build: the AdamW settings, one
// SFT run from a seeded model, and the sha256 of the weights file that testbed.json records.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '@mpo/engine';
import { getObjective } from '@mpo/objectives';
import {
  type StepRecord,
  type TrainableModel,
  type TrainExample,
  type TrainingParams,
  trainLoop,
} from '@mpo/trainer';

/**
 * A testbed's training parameters: its own epochs, batch and warm-up, the AdamW settings both testbeds train
 * with, no intermediate checkpoints, then the caller's overrides. The keys keep one order: testbed.json lists them.
 */
export function testbedTraining(
  seed: number,
  own: Pick<TrainingParams, 'epochs' | 'batchSize' | 'microBatchSize' | 'warmupRatio'>,
  overrides?: Partial<TrainingParams>,
): TrainingParams {
  return {
    epochs: own.epochs,
    batchSize: own.batchSize,
    microBatchSize: own.microBatchSize,
    learningRate: 2e-3,
    warmupRatio: own.warmupRatio,
    weightDecay: 0.01,
    maxGradNorm: 1,
    adamBeta1: 0.9,
    adamBeta2: 0.98,
    adamEps: 1e-8,
    seed,
    checkpointEvery: 0,
    keepCheckpoints: 1,
    ...overrides,
  };
}

/** SFT of `model` on `examples` in `run.work`; `run.identity` (what decides the run) is hashed into the config hash. */
export function trainTestbedSft(
  model: Model,
  examples: TrainExample[],
  training: TrainingParams,
  run: { work: string; threads: number; identity: unknown; onStep?: ((r: StepRecord) => void) | undefined },
) {
  const { threads } = run;
  return trainLoop({
    examples,
    objective: getObjective('sft'),
    hyperparameters: {},
    training,
    output: run.work,
    model: model as unknown as TrainableModel,
    loadFrom: async (dir) => (await Model.load(dir, { threads })) as unknown as TrainableModel,
    reference: {},
    configHash: createHash('sha256').update(JSON.stringify(run.identity)).digest('hex').slice(0, 16),
    hooks: { ...(run.onStep ? { onStep: run.onStep } : {}) },
  });
}

/** sha256 of the model.safetensors in `dir`, as testbed.json records it. */
export const safetensorsSha256 = (dir: string): string =>
  createHash('sha256')
    .update(readFileSync(join(dir, 'model.safetensors')))
    .digest('hex');
