// The training loop: resume from the latest checkpoint, then one step after another (step.ts:
// micro-batches with gradient accumulation to a global batch, an all-reduce across data-parallel ranks,
// AdamW with clipping on a cosine schedule), with metrics, held-out evaluations and checkpoints between
// steps; a resume is bit-identical.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyObjective, ScoresByGroup } from '@mpo/objectives';
import {
  latestCheckpoint,
  optimizerPath,
  saveCheckpoint,
  type TrainerState,
  zeroStagingDir,
} from './checkpoint.js';
import { DynamicLossScaler, type LossScaling } from './loss-scale.js';
import type { TrainableModel } from './model.js';
import { epochOrder } from './order.js';
import { precomputable } from './reference.js';
import { type StepContext, trainStep } from './step.js';
import type { CheckpointRecord, Communicator, StepRecord, TrainExample } from './types.js';
import { isShardCommunicator, ZERO_MANIFEST, ZeroOptimizer } from './zero.js';

export interface TrainingParams {
  epochs: number;
  maxSteps?: number;
  batchSize: number;
  microBatchSize: number;
  learningRate: number;
  warmupRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEps: number;
  seed: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  /**
   * ZeRO: 0 (off, default), 1 (fp32 master weights and AdamW moments sharded) or 2 (and each rank
   * keeps only its reduce-scattered gradient shard). See zero.ts for what the master is per dtype.
   */
  zeroStage?: number;
}

export type EvalMetrics = Record<string, number | Record<string, number>>;

export interface LoopHooks {
  /** Once, after loading (and resuming). */
  onStart?(info: { totalSteps: number; resumedFrom: number | null }): void | Promise<void>;
  onStep?(r: StepRecord): void | Promise<void>;
  /** Held-out metrics at the steps `evalAt` selects. */
  onEval?(step: number, metrics: EvalMetrics): void | Promise<void>;
  onCheckpoint?(c: CheckpointRecord): void | Promise<void>;
  /** Polled after every step: true → checkpoint now and return with stopped = true. */
  shouldStop?(): boolean | Promise<boolean>;
}

export interface LoopInput {
  examples: readonly TrainExample[];
  objective: AnyObjective;
  hyperparameters: object;
  training: TrainingParams;
  output: string;
  /** Loads weights from a checkpoint folder; the loop calls it when it resumes. */
  loadFrom(dir: string): Promise<TrainableModel>;
  /** The initial (policy) model, already loaded. */
  model: TrainableModel;
  /** Reference scores for every example (index-aligned with `examples`). */
  reference: ScoresByGroup;
  /** A frozen copy of the initial model, only for objectives that need KL on logits. */
  klReference?: TrainableModel;
  configHash: string;
  comm?: Communicator;
  /** Held-out evaluation (no grad) and the steps it runs after. */
  evaluate?(model: TrainableModel): Promise<EvalMetrics>;
  evalAt?(step: number, totalSteps: number): boolean;
  /** With several ranks: compare the ranks' weight hashes every this many steps (0 = never). */
  hashCheckEvery?: number;
  hooks?: LoopHooks;
  /** Threads for the ZeRO optimizer's shard update (default 1). */
  threads?: number;
  /** Dynamic loss scaling (fp16); absent: gradients unscaled. */
  lossScaling?: LossScaling;
  /** Informational events (a torn checkpoint skipped on resume). */
  log?: (event: Record<string, unknown> & { type: string }) => void;
}

export interface LoopResult {
  model: TrainableModel;
  step: number;
  totalSteps: number;
  stopped: boolean;
  resumedFrom: number | null;
  lastCheckpoint: CheckpointRecord | null;
}

export function totalStepsOf(n: number, t: TrainingParams): number {
  return t.maxSteps ?? t.epochs * Math.ceil(n / t.batchSize);
}

export async function trainLoop(input: LoopInput): Promise<LoopResult> {
  const { examples, objective, hyperparameters: h, training: t, output, comm } = input;
  const rank = comm?.rank ?? 0;
  const worldSize = comm?.worldSize ?? 1;
  const n = examples.length;
  if (n === 0) throw new Error('no training examples');
  const totalSteps = totalStepsOf(n, t);
  const metricsFile = join(output, 'metrics.jsonl');
  mkdirSync(output, { recursive: true });

  const start = await resume(input, rank, metricsFile);
  const { model, zero } = start;
  let { step, epoch, cursor } = start;
  const scaler = input.lossScaling ? new DynamicLossScaler(input.lossScaling, start.scalerState) : null;
  const s: StepContext = {
    input,
    model,
    zero,
    scaler,
    requirements: objective.requirements(h),
    rank,
    worldSize,
    totalSteps,
  };
  let lastCheckpoint: CheckpointRecord | null = null;
  const checkpoint = async () => {
    const state = { step, totalSteps, epoch, cursor, seed: t.seed, configHash: input.configHash };
    const saved = await writeCheckpoint(s, { ...state, ...(scaler ? { lossScaler: scaler.state() } : {}) });
    if (saved) lastCheckpoint = saved;
  };

  await input.hooks?.onStart?.({ totalSteps, resumedFrom: start.resumedFrom });
  let order = epochOrder(n, t.seed, epoch);
  let stopped = false;
  while (step < totalSteps) {
    if (cursor >= n) {
      epoch += 1;
      cursor = 0;
      order = epochOrder(n, t.seed, epoch);
    }
    const globalBatch = order.slice(cursor, cursor + t.batchSize);
    cursor += globalBatch.length;
    const { record, stop } = await trainStep(s, globalBatch, step, epoch);
    step += 1;
    if (rank === 0) appendFileSync(metricsFile, `${JSON.stringify(record)}\n`);
    await input.hooks?.onStep?.(record);

    const every = input.hashCheckEvery ?? 0;
    if (comm && worldSize > 1 && every > 0 && (step % every === 0 || step === totalSteps)) {
      await assertRanksAgree(comm, model.weightsHash(), step);
    }

    if (input.evaluate && rank === 0 && input.evalAt?.(step, totalSteps)) {
      await input.hooks?.onEval?.(step, await input.evaluate(model));
    }

    const due = t.checkpointEvery > 0 && step % t.checkpointEvery === 0;
    if (due || step === totalSteps || stop) await checkpoint();
    if (stop && step < totalSteps) {
      stopped = true;
      break;
    }
  }
  return { model, step, totalSteps, stopped, resumedFrom: start.resumedFrom, lastCheckpoint };
}

/** Where a run starts: the latest checkpoint's weights, optimizer and position, or the initial model at step 0. */
async function resume(input: LoopInput, rank: number, metricsFile: string) {
  const { training: t, output, comm } = input;
  const worldSize = comm?.worldSize ?? 1;
  const zeroStage = t.zeroStage ?? 0;
  // The sharded AdamW takes its clipping factor from ZeRO's own norm, which does not unscale fp16 gradients.
  if (zeroStage > 0 && input.lossScaling)
    throw new Error('training.zeroStage cannot be combined with fp16 loss scaling yet (use bf16 or fp32)');
  if (zeroStage > 0 && comm && worldSize > 1 && !isShardCommunicator(comm))
    throw new Error('training.zeroStage needs a communicator with reduceScatterSum and allGather');
  const makeZero = (m: TrainableModel) =>
    zeroStage > 0
      ? new ZeroOptimizer(m, isShardCommunicator(comm) ? comm : undefined, zeroStage as 1 | 2, input.threads)
      : null;
  const ckpt = latestCheckpoint(output, (dir, reason) =>
    input.log?.({ type: 'checkpoint-torn', dir, reason, action: 'falling back to the previous checkpoint' }),
  );
  if (!ckpt) {
    if (rank === 0) writeFileSync(metricsFile, '');
    const model = input.model;
    return {
      model,
      zero: makeZero(model),
      step: 0,
      epoch: 0,
      cursor: 0,
      resumedFrom: null,
      scalerState: undefined,
    };
  }
  if (ckpt.state.configHash !== input.configHash) {
    throw new Error(
      `${ckpt.dir} was written by a different training config; use a fresh output directory or delete its checkpoints`,
    );
  }
  const model = await input.loadFrom(ckpt.dir);
  const zero = makeZero(model);
  if (zero) await zero.load(ckpt.dir);
  else if (existsSync(join(ckpt.dir, ZERO_MANIFEST)) && !existsSync(optimizerPath(ckpt.dir)))
    throw new Error(`${ckpt.dir} holds ZeRO optimizer shards: resume with training.zeroStage 1 or 2`);
  else await model.loadOptimizer(optimizerPath(ckpt.dir));
  const { step, epoch, cursor } = ckpt.state;
  if (rank === 0) truncateMetrics(metricsFile, step);
  return {
    model,
    zero,
    step,
    epoch,
    cursor,
    resumedFrom: step as number | null,
    scalerState: ckpt.state.lossScaler,
  };
}

/**
 * A checkpoint of the weights, the optimizer and the loop's position. Under ZeRO every rank leaves its
 * shard in a staging folder; once all have, rank 0 moves them in. Returns the record on rank 0.
 */
async function writeCheckpoint(
  s: StepContext,
  state: Omit<TrainerState, 'version' | 'savedAt' | 'weightsHash'>,
): Promise<CheckpointRecord | null> {
  const { input, zero, rank, worldSize, model } = s;
  let writeOptimizer: ((tmp: string) => Promise<unknown>) | undefined;
  if (zero) {
    const staging = zeroStagingDir(input.output, state.step);
    await zero.saveShard(staging);
    if (input.comm && worldSize > 1) await input.comm.allReduceSum(new Float32Array(1));
    writeOptimizer = (tmp) => zero.finishCheckpoint(staging, tmp);
  }
  if (rank !== 0) return null;
  const record = await saveCheckpoint(model, input.output, state, input.training.keepCheckpoints, {
    ...(writeOptimizer ? { writeOptimizer } : {}),
  });
  await input.hooks?.onCheckpoint?.(record);
  return record;
}

/**
 * Data-parallel ranks must hold identical weights. Each rank all-reduces its
 * weight hash (as 16-bit chunks, exact in float32) and checks the sum is
 * worldSize times its own: any difference means some rank diverged.
 */
export async function assertRanksAgree(comm: Communicator, hashHex: string, step: number): Promise<void> {
  const chunks = new Float32Array(8);
  for (let i = 0; i < 8; i++) chunks[i] = Number.parseInt(hashHex.slice(i * 4, i * 4 + 4), 16);
  const sum = Float32Array.from(chunks);
  await comm.allReduceSum(sum);
  for (let i = 0; i < 8; i++) {
    if (sum[i] !== chunks[i]! * comm.worldSize) {
      throw new Error(
        `rank ${comm.rank}: weights differ across ranks at step ${step} (hash ${hashHex.slice(0, 16)})`,
      );
    }
  }
}

/** Drops metric lines after `step`: a resumed run re-emits them, exactly once. */
function truncateMetrics(file: string, step: number): void {
  if (!existsSync(file)) return;
  const kept = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= step);
  writeFileSync(file, kept.map((l) => `${l}\n`).join(''));
}

export { precomputable };
