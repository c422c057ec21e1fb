// The training loop: micro-batches with gradient accumulation to a global
// batch, an all-reduce across data-parallel ranks, AdamW with clipping on a
// cosine schedule, checkpoints, and a bit-identical resume.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyObjective, ScoresByGroup, SequenceScores } from '@mpo/objectives';
import {
  type LossScalerState,
  latestCheckpoint,
  optimizerPath,
  saveCheckpoint,
  type TrainerState,
  zeroStagingDir,
} from './checkpoint.js';
import { DynamicLossScaler, type LossScaling } from './loss-scale.js';
import { MetricSums } from './metrics.js';
import type { TrainableModel } from './model.js';
import { chunks, epochOrder, shard } from './order.js';
import { precomputable, sliceAll } from './reference.js';
import { cosineWithWarmup } from './schedule.js';
import { backwardUnits, scoreGroups } from './scoring.js';
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
  const req = objective.requirements(h);
  const metricsFile = join(output, 'metrics.jsonl');
  mkdirSync(output, { recursive: true });

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
  let model = input.model;
  let zero = makeZero(model);
  let step = 0;
  let epoch = 0;
  let cursor = 0;
  let resumedFrom: number | null = null;
  let scalerState: LossScalerState | undefined;
  const ckpt = latestCheckpoint(output, (dir, reason) =>
    input.log?.({ type: 'checkpoint-torn', dir, reason, action: 'falling back to the previous checkpoint' }),
  );
  if (ckpt) {
    if (ckpt.state.configHash !== input.configHash) {
      throw new Error(
        `${ckpt.dir} was written by a different training config; use a fresh output directory or delete its checkpoints`,
      );
    }
    model = await input.loadFrom(ckpt.dir);
    zero = makeZero(model);
    if (zero) await zero.load(ckpt.dir);
    else if (existsSync(join(ckpt.dir, ZERO_MANIFEST)) && !existsSync(optimizerPath(ckpt.dir)))
      throw new Error(`${ckpt.dir} holds ZeRO optimizer shards: resume with training.zeroStage 1 or 2`);
    else await model.loadOptimizer(optimizerPath(ckpt.dir));
    ({ step, epoch, cursor } = ckpt.state);
    scalerState = ckpt.state.lossScaler;
    resumedFrom = step;
    if (rank === 0) truncateMetrics(metricsFile, step);
  } else if (rank === 0) {
    writeFileSync(metricsFile, '');
  }

  const scaler = input.lossScaling ? new DynamicLossScaler(input.lossScaling, scalerState) : null;
  let lastCheckpoint: CheckpointRecord | null = null;
  const checkpoint = async () => {
    const state: Omit<TrainerState, 'version' | 'savedAt' | 'weightsHash'> = {
      step,
      totalSteps,
      epoch,
      cursor,
      seed: t.seed,
      configHash: input.configHash,
      ...(scaler ? { lossScaler: scaler.state() } : {}),
    };
    let writeOptimizer: ((tmp: string) => Promise<unknown>) | undefined;
    if (zero) {
      // Every rank leaves its shard in a staging folder; once all have, rank 0 moves them in.
      const staging = zeroStagingDir(output, step);
      await zero.saveShard(staging);
      if (comm && worldSize > 1) await comm.allReduceSum(new Float32Array(1));
      const z = zero;
      writeOptimizer = (tmp) => z.finishCheckpoint(staging, tmp);
    }
    if (rank !== 0) return;
    lastCheckpoint = await saveCheckpoint(model, output, state, t.keepCheckpoints, {
      ...(writeOptimizer ? { writeOptimizer } : {}),
    });
    await input.hooks?.onCheckpoint?.(lastCheckpoint);
  };

  await input.hooks?.onStart?.({ totalSteps, resumedFrom });
  let order = epochOrder(n, t.seed, epoch);
  let stopped = false;
  while (step < totalSteps) {
    const t0 = performance.now();
    const timing = {
      data: 0,
      forward: 0,
      objective: 0,
      backward: 0,
      accumulate: 0,
      allreduce: 0,
      optimizer: 0,
    };
    if (cursor >= n) {
      epoch += 1;
      cursor = 0;
      order = epochOrder(n, t.seed, epoch);
    }
    const globalBatch = order.slice(cursor, cursor + t.batchSize);
    cursor += globalBatch.length;
    const local = shard(globalBatch, rank, worldSize);

    model.setAdapterStep?.(step); // LoRA dropout masks are keyed by the step: a resume draws the same ones
    const tz = performance.now();
    model.zeroGrad();
    timing.optimizer += performance.now() - tz;
    // Each micro-batch's gradient is formed alone and then added to an
    // accumulator, so the sum has the same shape — ((G1 + G2) + G3)... — as the
    // all-reduce across ranks that each hold one micro-batch: one rank with k
    // micro-batches and k ranks with one each then agree bit for bit.
    const microBatches = chunks(local, t.microBatchSize);
    // ZeRO-2 reduce-scatters after every micro-batch, so every rank runs as many rounds as the rank
    // with the most micro-batches (one with fewer contributes zeros).
    // With bf16 weight storage both stages do (zero.ts): the engine's bf16 gradient cannot hold a
    // sum over micro-batches to fp32 precision, so it is drained into the fp32 shard after each.
    const shardGrads = zero?.stage === 2 || zero?.bf16Weights ? zero : null;
    const rounds = shardGrads
      ? microBatchRounds(globalBatch.length, worldSize, t.microBatchSize)
      : microBatches.length;
    let acc: Float32Array | null = null;
    let loss = 0;
    let tokens = 0;
    let reduceSec = 0;
    let reducedBytes = 0;
    // Objective metrics and the per-language reward gaps (under RG_PREFIX), as sums and counts.
    const sums = new MetricSums();
    const lossScale = scaler?.scale ?? 1;
    for (let round = 0; round < rounds; round++) {
      const mb = microBatches[round];
      if (mb) {
        // Each micro-batch's loss is its own mean; weighting by its share of the
        // global batch makes the accumulated gradient that of the global mean.
        const scale = mb.length / globalBatch.length;
        const exs = mb.map((i) => examples[i]!);
        // Batch building happens inside scoreGroups and counts as forward time.
        let tm = performance.now();
        const scored = await scoreGroups(model, exs, req.policy, {
          grad: true,
          ...(input.klReference ? { klReference: input.klReference } : {}),
        });
        const policy = scored.scores;
        tokens += scored.tokens;
        timing.forward += performance.now() - tm;

        tm = performance.now();
        const ref = sliceAll(input.reference, mb);
        const out = objective.compute(policy, ref, h, { lang: exs.map((e) => e.lang) });
        loss += out.loss * scale;
        sums.addAll(out.metrics, out.metricCounts, mb.length);
        accumulateRewardGaps(policy, exs, sums);
        timing.objective += performance.now() - tm;

        tm = performance.now();
        await backwardUnits(model, scored, out.grads, scale * lossScale);
        timing.backward += performance.now() - tm;
      }
      const tm = performance.now();
      if (shardGrads) {
        reducedBytes += (await shardGrads.accumulateShard(round === 0)).bytes;
        const dt = performance.now() - tm;
        reduceSec += dt / 1000;
        timing.allreduce += dt; // the shard's additions ride along: they are a sliver of the collective
        model.zeroGrad();
        timing.accumulate += performance.now() - tm - dt;
      } else if (microBatches.length > 1) {
        const g = model.gradBuffer();
        if (acc === null) acc = Float32Array.from(g);
        else for (let i = 0; i < acc.length; i++) acc[i]! += g[i]!;
        model.zeroGrad();
        timing.accumulate += performance.now() - tm;
      }
    }
    if (acc !== null) model.gradBuffer().set(acc);

    let tm = performance.now();
    let stopFlag = (await input.hooks?.shouldStop?.()) ? 1 : 0;
    let busbw: number | undefined;
    if (comm && worldSize > 1) {
      // nccl-tests' bus bandwidth, comparable across world sizes: bytes · 2(n−1)/n per second for
      // an all-reduce, bytes · (n−1)/n for a reduce-scatter (ZeRO-2, timed in the rounds above).
      if (shardGrads) busbw = (reducedBytes * (worldSize - 1)) / worldSize / reduceSec / 1e9;
      else {
        const grads = model.gradBuffer();
        const tg = performance.now();
        await comm.allReduceSum(grads);
        const sec = (performance.now() - tg) / 1000;
        // This rank's own measurement (a timing, not an average over examples).
        busbw = (grads.byteLength * 2 * (worldSize - 1)) / worldSize / sec / 1e9;
      }
      // Loss and tokens summed over ranks; any rank asking to stop stops all.
      const v = new Float32Array([loss, tokens, stopFlag]);
      await comm.allReduceSum(v);
      [loss, tokens, stopFlag] = [v[0]!, v[1]!, v[2]! > 0 ? 1 : 0];
      // Every logged metric over the whole global batch, not rank 0's shard.
      await sums.reduce(comm);
    }
    timing.allreduce += performance.now() - tm;

    tm = performance.now();
    const lr = cosineWithWarmup(step, totalSteps, t.learningRate, t.warmupRatio);
    const hyper = {
      lr,
      beta1: t.adamBeta1,
      beta2: t.adamBeta2,
      eps: t.adamEps,
      weightDecay: t.weightDecay,
      maxGradNorm: t.maxGradNorm,
      ...(scaler ? { gradScale: lossScale } : {}),
    };
    const { gradNorm } = zero ? await zero.stepShard(hyper) : await model.step(hyper);
    timing.optimizer += performance.now() - tm;
    // A non-finite norm means the engine skipped the update (an overflow under loss scaling).
    const skipped = !Number.isFinite(gradNorm);
    scaler?.update(!skipped);
    step += 1;

    const seconds = (performance.now() - t0) / 1000;
    const { metrics, rgByLanguage, rgTarget } = splitRewardGaps(sums.means());
    if (busbw !== undefined) metrics['allreduce/busbw_gbps'] = busbw;
    metrics['optimizer/skipped'] = skipped ? 1 : 0;
    if (scaler) {
      metrics['optimizer/loss_scale'] = lossScale;
      metrics['optimizer/skipped_total'] = scaler.skipped;
    }
    const record: StepRecord = {
      step,
      totalSteps,
      epoch,
      loss,
      lr,
      gradNorm,
      tokensPerSec: tokens / seconds,
      seconds,
      metrics,
      ...(rgTarget !== undefined ? { rgTarget } : {}),
      rgByLanguage,
      timing: Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, v / 1000])),
    };
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
    if (due || step === totalSteps || stopFlag) await checkpoint();
    if (stopFlag && step < totalSteps) {
      stopped = true;
      break;
    }
  }
  return { model, step, totalSteps, stopped, resumedFrom, lastCheckpoint };
}

/** Micro-batches of the rank with the most examples of a global batch of `n` (shard() gives the first ranks one more). */
export function microBatchRounds(n: number, worldSize: number, microBatchSize: number): number {
  return Math.ceil(Math.ceil(n / worldSize) / microBatchSize);
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

/** Internal names of the reward gaps in the step's MetricSums (split out before logging): overall and per language. */
const RG_ALL = '\u0000rg';
const RG_PREFIX = '\u0000rg:';

/** RG = avgLogp(chosen) − avgLogp(rejected) of the target pair, overall and per example language, into `sums`. */
function accumulateRewardGaps(policy: ScoresByGroup, exs: readonly TrainExample[], sums: MetricSums): void {
  const c: SequenceScores | undefined = policy.targetChosen;
  const r: SequenceScores | undefined = policy.targetRejected;
  if (!c?.sumLogp || !r?.sumLogp) return;
  exs.forEach((ex, i) => {
    const rg = c.sumLogp[i]! / Math.max(1, c.tokens[i]!) - r.sumLogp[i]! / Math.max(1, r.tokens[i]!);
    sums.add(RG_ALL, rg, 1);
    sums.add(`${RG_PREFIX}${ex.lang}`, rg, 1);
  });
}

/** The objective's metrics apart from the reward gaps, which become rgTarget and rgByLanguage. */
function splitRewardGaps(means: Record<string, number>) {
  const metrics: Record<string, number> = {};
  const rgByLanguage: Record<string, number> = {};
  let rgTarget: number | undefined;
  for (const [k, v] of Object.entries(means)) {
    if (k === RG_ALL) rgTarget = v;
    else if (k.startsWith(RG_PREFIX)) rgByLanguage[k.slice(RG_PREFIX.length)] = v;
    else metrics[k] = v;
  }
  return { metrics, rgByLanguage, rgTarget };
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
