// The training loop: micro-batches with gradient accumulation to a global
// batch, an all-reduce across data-parallel ranks, AdamW with clipping on a
// cosine schedule, checkpoints, and a bit-identical resume.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyObjective, GradsByGroup, ScoreGrads, ScoresByGroup, SequenceScores } from '@mpo/objectives';
import { latestCheckpoint, optimizerPath, saveCheckpoint, type TrainerState } from './checkpoint.js';
import { enginePooling, type TrainableModel } from './model.js';
import { chunks, epochOrder, shard } from './order.js';
import { precomputable, sliceAll } from './reference.js';
import { cosineWithWarmup } from './schedule.js';
import { batchTokens, buildBatch } from './sequences.js';
import type { CheckpointRecord, Communicator, StepRecord, TrainExample } from './types.js';

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

  let model = input.model;
  let step = 0;
  let epoch = 0;
  let cursor = 0;
  let resumedFrom: number | null = null;
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
    await model.loadOptimizer(optimizerPath(ckpt.dir));
    ({ step, epoch, cursor } = ckpt.state);
    resumedFrom = step;
    if (rank === 0) truncateMetrics(metricsFile, step);
  } else if (rank === 0) {
    writeFileSync(metricsFile, '');
  }

  let lastCheckpoint: CheckpointRecord | null = null;
  const checkpoint = async () => {
    const state: Omit<TrainerState, 'version' | 'savedAt' | 'weightsHash'> = {
      step,
      totalSteps,
      epoch,
      cursor,
      seed: t.seed,
      configHash: input.configHash,
    };
    if (rank !== 0) return;
    lastCheckpoint = await saveCheckpoint(model, output, state, t.keepCheckpoints);
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

    const tz = performance.now();
    model.zeroGrad();
    timing.optimizer += performance.now() - tz;
    // Each micro-batch's gradient is formed alone and then added to an
    // accumulator, so the sum has the same shape — ((G1 + G2) + G3)... — as the
    // all-reduce across ranks that each hold one micro-batch: one rank with k
    // micro-batches and k ranks with one each then agree bit for bit.
    const microBatches = chunks(local, t.microBatchSize);
    let acc: Float32Array | null = null;
    let loss = 0;
    let tokens = 0;
    const metrics: Record<string, number> = {};
    const rgSum: Record<string, number> = {};
    const rgCount: Record<string, number> = {};
    for (const mb of microBatches) {
      // Each micro-batch's loss is its own mean; weighting by its share of the
      // global batch makes the accumulated gradient that of the global mean.
      const scale = mb.length / globalBatch.length;
      const exs = mb.map((i) => examples[i]!);
      let tm = performance.now();
      const batches = req.policy.map((r) => buildBatch(exs, r.sequence));
      timing.data += performance.now() - tm;

      tm = performance.now();
      const policy: ScoresByGroup = {};
      const handles = new Map<string, number>();
      for (const [k, r] of req.policy.entries()) {
        const res = await model.score(batches[k]!, {
          grad: r.grad,
          lmHead: r.sumLogp || r.kl === true,
          pooling: r.hidden ? [enginePooling[r.hidden]] : [],
          ...(r.kl && input.klReference ? { reference: input.klReference } : {}),
        });
        policy[r.group] = res;
        tokens += batchTokens(batches[k]!);
        if (res.handle !== undefined) handles.set(r.group, res.handle);
      }
      timing.forward += performance.now() - tm;

      tm = performance.now();
      const ref = sliceAll(input.reference, mb);
      const out = objective.compute(policy, ref, h, { lang: exs.map((e) => e.lang) });
      loss += out.loss * scale;
      for (const [k, v] of Object.entries(out.metrics)) metrics[k] = (metrics[k] ?? 0) + v * scale;
      accumulateRewardGaps(policy, exs, rgSum, rgCount);
      timing.objective += performance.now() - tm;

      tm = performance.now();
      for (const [group, handle] of handles) {
        const g = out.grads[group as keyof GradsByGroup];
        if (g) await model.backward(handle, scaleGrads(g, scale));
        else model.release(handle);
      }
      timing.backward += performance.now() - tm;
      tm = performance.now();
      if (microBatches.length > 1) {
        const g = model.gradBuffer();
        if (acc === null) acc = Float32Array.from(g);
        else for (let i = 0; i < acc.length; i++) acc[i]! += g[i]!;
        model.zeroGrad();
      }
      timing.accumulate += performance.now() - tm;
    }
    if (acc !== null) model.gradBuffer().set(acc);

    let tm = performance.now();
    let stopFlag = (await input.hooks?.shouldStop?.()) ? 1 : 0;
    if (comm && worldSize > 1) {
      const grads = model.gradBuffer();
      const tg = performance.now();
      await comm.allReduceSum(grads);
      // nccl-tests' bus bandwidth: bytes · 2(n−1)/n per second, comparable across world sizes.
      const sec = (performance.now() - tg) / 1000;
      metrics['allreduce/busbw_gbps'] = (grads.byteLength * ((2 * (worldSize - 1)) / worldSize)) / sec / 1e9;
      // Loss and tokens summed over ranks; any rank asking to stop stops all.
      const v = new Float32Array([loss, tokens, stopFlag]);
      await comm.allReduceSum(v);
      [loss, tokens, stopFlag] = [v[0]!, v[1]!, v[2]! > 0 ? 1 : 0];
    }
    timing.allreduce += performance.now() - tm;

    tm = performance.now();
    const lr = cosineWithWarmup(step, totalSteps, t.learningRate, t.warmupRatio);
    const { gradNorm } = await model.step({
      lr,
      beta1: t.adamBeta1,
      beta2: t.adamBeta2,
      eps: t.adamEps,
      weightDecay: t.weightDecay,
      maxGradNorm: t.maxGradNorm,
    });
    timing.optimizer += performance.now() - tm;
    step += 1;

    const seconds = (performance.now() - t0) / 1000;
    const rgByLanguage: Record<string, number> = {};
    for (const lang of Object.keys(rgSum).sort()) rgByLanguage[lang] = rgSum[lang]! / rgCount[lang]!;
    const counts = Object.values(rgCount).reduce((a, b) => a + b, 0);
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
      ...(counts > 0 ? { rgTarget: Object.values(rgSum).reduce((a, b) => a + b, 0) / counts } : {}),
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

function scaleGrads(g: ScoreGrads, s: number): ScoreGrads {
  const out: ScoreGrads = {};
  if (g.sumLogp) out.sumLogp = g.sumLogp.map((x) => x * s);
  if (g.kl) out.kl = g.kl.map((x) => x * s);
  if (g.lastHidden) out.lastHidden = g.lastHidden.map((x) => x * s);
  if (g.meanHidden) out.meanHidden = g.meanHidden.map((x) => x * s);
  if (g.meanUnmaskedHidden) out.meanUnmaskedHidden = g.meanUnmaskedHidden.map((x) => x * s);
  return out;
}

/** RG = avgLogp(chosen) − avgLogp(rejected) of the target pair, per example language. */
function accumulateRewardGaps(
  policy: ScoresByGroup,
  exs: readonly TrainExample[],
  sum: Record<string, number>,
  count: Record<string, number>,
): void {
  const c: SequenceScores | undefined = policy.targetChosen;
  const r: SequenceScores | undefined = policy.targetRejected;
  if (!c?.sumLogp || !r?.sumLogp) return;
  exs.forEach((ex, i) => {
    const rg = c.sumLogp[i]! / Math.max(1, c.tokens[i]!) - r.sumLogp[i]! / Math.max(1, r.tokens[i]!);
    sum[ex.lang] = (sum[ex.lang] ?? 0) + rg;
    count[ex.lang] = (count[ex.lang] ?? 0) + 1;
  });
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
