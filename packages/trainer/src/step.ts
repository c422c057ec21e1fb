// One optimizer step of the training loop (loop.ts): the rank's share of the
// global batch in micro-batches with gradient accumulation, the all-reduce
// across data-parallel ranks (or ZeRO's per-micro-batch reduce-scatter), the
// AdamW update on the cosine schedule, and the step's record.
import type { Requirements, ScoresByGroup, SequenceScores } from '@mpo/objectives';
import type { LoopInput } from './loop.js';
import type { DynamicLossScaler } from './loss-scale.js';
import { MetricSums } from './metrics.js';
import type { TrainableModel } from './model.js';
import { chunks, shard } from './order.js';
import { sliceAll } from './reference.js';
import { cosineWithWarmup } from './schedule.js';
import { backwardUnits, scoreGroups } from './scoring.js';
import { StepTiming } from './step-timing.js';
import type { StepRecord, TrainExample } from './types.js';
import type { ZeroOptimizer } from './zero.js';

/** What every step of one training run shares. */
export interface StepContext {
  input: LoopInput;
  model: TrainableModel;
  zero: ZeroOptimizer | null;
  scaler: DynamicLossScaler | null;
  requirements: Requirements;
  rank: number;
  worldSize: number;
  totalSteps: number;
}

/** A step's sums before they are reduced across ranks. */
interface Accumulated {
  loss: number;
  tokens: number;
  /** Objective metrics and the per-language reward gaps (under RG_PREFIX), as sums and counts. */
  sums: MetricSums;
  /** Seconds and bytes of ZeRO's reduce-scatters, done per micro-batch. */
  reduceSec: number;
  reducedBytes: number;
  /** ZeRO reduced the gradients in the rounds (no all-reduce after them). */
  sharded: boolean;
}

/**
 * Step number `step` (0-based) on `globalBatch` (example indices): returns its record, and whether any rank
 * asked to stop (hooks.shouldStop, polled once per step).
 */
export async function trainStep(
  s: StepContext,
  globalBatch: readonly number[],
  step: number,
  epoch: number,
): Promise<{ record: StepRecord; stop: boolean }> {
  const timing = new StepTiming();
  const t = s.input.training;
  s.model.setAdapterStep?.(step); // LoRA dropout masks are keyed by the step: a resume draws the same ones
  await timing.time('optimizer', () => s.model.zeroGrad());
  const lossScale = s.scaler?.scale ?? 1;
  const acc = await accumulateGradients(s, globalBatch, lossScale, timing);
  const reduced = await timing.time('allreduce', () => reduceAcrossRanks(s, acc));

  const lr = cosineWithWarmup(step, s.totalSteps, t.learningRate, t.warmupRatio);
  const hyper = {
    lr,
    beta1: t.adamBeta1,
    beta2: t.adamBeta2,
    eps: t.adamEps,
    weightDecay: t.weightDecay,
    maxGradNorm: t.maxGradNorm,
    ...(s.scaler ? { gradScale: lossScale } : {}),
  };
  const { gradNorm } = await timing.time('optimizer', () =>
    s.zero ? s.zero.stepShard(hyper) : s.model.step(hyper),
  );
  // A non-finite norm means the engine skipped the update (an overflow under loss scaling).
  const skipped = !Number.isFinite(gradNorm);
  s.scaler?.update(!skipped);

  const seconds = timing.elapsed();
  const { metrics, rgByLanguage, rgTarget } = splitRewardGaps(acc.sums.means());
  if (reduced.busbw !== undefined) metrics['allreduce/busbw_gbps'] = reduced.busbw;
  metrics['optimizer/skipped'] = skipped ? 1 : 0;
  if (s.scaler) {
    metrics['optimizer/loss_scale'] = lossScale;
    metrics['optimizer/skipped_total'] = s.scaler.skipped;
  }
  const record: StepRecord = {
    step: step + 1,
    totalSteps: s.totalSteps,
    epoch,
    loss: reduced.loss,
    lr,
    gradNorm,
    tokensPerSec: reduced.tokens / seconds,
    seconds,
    metrics,
    ...(rgTarget !== undefined ? { rgTarget } : {}),
    rgByLanguage,
    timing: timing.seconds(),
  };
  return { record, stop: reduced.stop };
}

/**
 * Forward, objective and backward over this rank's micro-batches, their gradients summed into the model's
 * gradient buffer (or, under ZeRO-2 and bf16 weights, drained into the fp32 shard after each).
 */
async function accumulateGradients(
  s: StepContext,
  globalBatch: readonly number[],
  lossScale: number,
  timing: StepTiming,
): Promise<Accumulated> {
  const { model, zero, worldSize, input } = s;
  const local = shard(globalBatch, s.rank, worldSize);
  // Each micro-batch's gradient is formed alone and then added to an
  // accumulator, so the sum has the same shape — ((G1 + G2) + G3)... — as the
  // all-reduce across ranks that each hold one micro-batch: one rank with k
  // micro-batches and k ranks with one each then agree bit for bit.
  const microBatches = chunks(local, input.training.microBatchSize);
  // ZeRO-2 reduce-scatters after every micro-batch, so every rank runs as many rounds as the rank
  // with the most micro-batches (one with fewer contributes zeros).
  // With bf16 weight storage both stages do (zero.ts): the engine's bf16 gradient cannot hold a
  // sum over micro-batches to fp32 precision, so it is drained into the fp32 shard after each.
  const shardGrads = zero?.stage === 2 || zero?.bf16Weights ? zero : null;
  const rounds = shardGrads
    ? microBatchRounds(globalBatch.length, worldSize, input.training.microBatchSize)
    : microBatches.length;
  const out: Accumulated = {
    loss: 0,
    tokens: 0,
    sums: new MetricSums(),
    reduceSec: 0,
    reducedBytes: 0,
    sharded: shardGrads !== null,
  };
  let acc: Float32Array | null = null;
  for (let round = 0; round < rounds; round++) {
    const mb = microBatches[round];
    if (mb) await microBatch(s, mb, mb.length / globalBatch.length, lossScale, out, timing);
    const tm = performance.now();
    if (shardGrads) {
      out.reducedBytes += (await shardGrads.accumulateShard(round === 0)).bytes;
      const dt = performance.now() - tm;
      out.reduceSec += dt / 1000;
      timing.add('allreduce', dt); // the shard's additions ride along: they are a sliver of the collective
      model.zeroGrad();
      timing.add('accumulate', performance.now() - tm - dt);
    } else if (microBatches.length > 1) {
      const g = model.gradBuffer();
      if (acc === null) acc = Float32Array.from(g);
      else for (let i = 0; i < acc.length; i++) acc[i]! += g[i]!;
      model.zeroGrad();
      timing.add('accumulate', performance.now() - tm);
    }
  }
  if (acc !== null) model.gradBuffer().set(acc);
  return out;
}

/**
 * One micro-batch: scores (with gradients), the objective, and the backward pass. `scale` is its share of
 * the global batch: each micro-batch's loss is its own mean, so weighting by the share makes the
 * accumulated gradient that of the global mean.
 */
async function microBatch(
  s: StepContext,
  mb: readonly number[],
  scale: number,
  lossScale: number,
  out: Accumulated,
  timing: StepTiming,
): Promise<void> {
  const { input, model } = s;
  const exs = mb.map((i) => input.examples[i]!);
  // Batch building happens inside scoreGroups and counts as forward time.
  const scored = await timing.time('forward', () =>
    scoreGroups(model, exs, s.requirements.policy, {
      grad: true,
      ...(input.klReference ? { klReference: input.klReference } : {}),
    }),
  );
  out.tokens += scored.tokens;
  const result = await timing.time('objective', () => {
    const ref = sliceAll(input.reference, mb);
    const r = input.objective.compute(scored.scores, ref, input.hyperparameters, {
      lang: exs.map((e) => e.lang),
    });
    out.loss += r.loss * scale;
    out.sums.addAll(r.metrics, r.metricCounts, mb.length);
    accumulateRewardGaps(scored.scores, exs, out.sums);
    return r;
  });
  await timing.time('backward', () => backwardUnits(model, scored, result.grads, scale * lossScale));
}

/**
 * The gradients, loss, tokens, metrics and stop request summed over ranks (any rank asking to stop stops
 * all), with the bus bandwidth this rank measured. One rank: the stop request alone.
 */
async function reduceAcrossRanks(
  s: StepContext,
  a: Accumulated,
): Promise<{ loss: number; tokens: number; stop: boolean; busbw: number | undefined }> {
  const { comm } = s.input;
  const stopFlag = (await s.input.hooks?.shouldStop?.()) ? 1 : 0;
  const { worldSize } = s;
  if (!comm || worldSize <= 1)
    return { loss: a.loss, tokens: a.tokens, stop: stopFlag > 0, busbw: undefined };
  // nccl-tests' bus bandwidth, comparable across world sizes: bytes · 2(n−1)/n per second for
  // an all-reduce, bytes · (n−1)/n for a reduce-scatter (ZeRO-2, timed in the rounds).
  let busbw: number;
  if (a.sharded) busbw = (a.reducedBytes * (worldSize - 1)) / worldSize / a.reduceSec / 1e9;
  else {
    const grads = s.model.gradBuffer();
    const tg = performance.now();
    await comm.allReduceSum(grads);
    const sec = (performance.now() - tg) / 1000;
    // This rank's own measurement (a timing, not an average over examples).
    busbw = (grads.byteLength * 2 * (worldSize - 1)) / worldSize / sec / 1e9;
  }
  const v = new Float32Array([a.loss, a.tokens, stopFlag]);
  await comm.allReduceSum(v);
  // Every logged metric over the whole global batch, not rank 0's shard.
  await a.sums.reduce(comm);
  return { loss: v[0]!, tokens: v[1]!, stop: v[2]! > 0, busbw };
}

/** Micro-batches of the rank with the most examples of a global batch of `n` (shard() gives the first ranks one more). */
export function microBatchRounds(n: number, worldSize: number, microBatchSize: number): number {
  return Math.ceil(Math.ceil(n / worldSize) / microBatchSize);
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
