// A train job's payload → the `mpo train` config of its child. Paths are
// opened only under the configured roots (checked again here, symlinks
// included: the payload is user input that crossed Redis). The output folder
// is <artifactRoot>/<runId>/<trialId>, the same on every agent, so a job
// re-queued after a crash resumes from the checkpoints its last agent wrote.
// Everything the resume hash covers (threads included) is derived from the
// payload alone, never from the agent that happens to run it.

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { PASSED_THROUGH_TRAINING, PathError, resolveUnderRoot, type TrainJobData } from '@mpo/queue';
import { BUILTIN_DATA, ConfigError, parseTrainConfig, resolveBuiltinModel } from '@mpo/trainer';
import { errorMessage } from '@mpo/util';

export interface Roots {
  modelRoot: string;
  dataRoot: string;
  artifactRoot: string;
}

/** A payload the agent cannot turn into a valid config: retrying cannot help. */
export class JobConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobConfigError';
  }
}

export const trialDir = (artifactRoot: string, runId: string, trialId: string) =>
  join(artifactRoot, runId, trialId);

/** Metrics that only the held-out evaluation produces: asking for them turns evaluation on. */
const isHeldOutMetric = (m: string) => m.startsWith('heldout/');

export function confined(root: string, rel: string, what: string): string {
  try {
    return resolveUnderRoot(root, rel);
  } catch (err) {
    if (err instanceof PathError) throw new JobConfigError(`${what} "${rel}": ${err.message}`);
    throw err;
  }
}

function modelSpec(ref: TrainJobData['model'], root: string): unknown {
  if (ref.kind === 'builtin') {
    const id = `builtin:${ref.id}`;
    try {
      resolveBuiltinModel(id);
    } catch (err) {
      throw new JobConfigError(`model: ${errorMessage(err)}`);
    }
    return id;
  }
  const abs = confined(root, ref.path, 'model');
  // A JSON file under the model root describes a freshly initialised model
  // ({"init": {...config}, "seed": n}): tiny random models for smoke runs and tests.
  if (abs.endsWith('.json')) {
    let spec: unknown;
    try {
      spec = JSON.parse(readFileSync(abs, 'utf8'));
    } catch (err) {
      throw new JobConfigError(`model "${ref.path}": not valid JSON (${errorMessage(err)})`);
    }
    const s = spec as { init?: unknown; seed?: unknown };
    if (typeof s !== 'object' || s === null || typeof s.init !== 'object' || s.init === null)
      throw new JobConfigError(`model "${ref.path}": a model file must be {"init": {...config}, "seed": n}`);
    return { init: s.init, seed: s.seed ?? 0 };
  }
  return abs;
}

/** The format of a data file when the spec did not say: by extension, then by the first record's fields. */
export function guessDataFormat(path: string): 'mpo' | 'pairwise' | 'pretokenized' | 'alpaca' {
  const head = readHead(path, 64 * 1024);
  if (path.endsWith('.jsonl')) return /"prompt_ids"\s*:/.test(head) ? 'pretokenized' : 'pairwise';
  if (/"source_chosen"\s*:|"target_chosen"\s*:/.test(head)) return 'mpo';
  if (/"instruction"\s*:/.test(head)) return 'alpaca';
  throw new JobConfigError(`data "${path}": cannot tell its format; give "format" in the run spec`);
}

function readHead(path: string, bytes: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function dataSpec(d: TrainJobData, root: string): Record<string, unknown> {
  if (d.data.length !== 1) {
    throw new JobConfigError(
      `data: the trainer reads one data source per trial, this job lists ${d.data.length}; merge them into one file`,
    );
  }
  const ref = d.data[0]!;
  let path: string;
  let format: string | undefined = ref.format;
  if (ref.kind === 'builtin') {
    path = `builtin:${ref.id}`;
    format ??= BUILTIN_DATA[path]?.format;
  } else {
    path = confined(root, ref.path, 'data');
    format ??= guessDataFormat(path);
  }
  // Keep the run's languages. Alpaca files are single-language utility data
  // whose rows carry no target language to filter on.
  const languages = [...new Set([d.dominantLanguage, ...d.targetLanguages])];
  return {
    path,
    ...(format ? { format } : {}),
    dominantLanguage: d.dominantLanguage,
    ...(format === 'alpaca' ? {} : { languages }),
  };
}

function optionalTraining(t: TrainJobData['training']): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of PASSED_THROUGH_TRAINING) if (t[k] !== undefined) out[k] = t[k];
  return out;
}

export interface TrainChildPlan {
  /** What goes into the config file. */
  config: Record<string, unknown>;
  output: string;
  /** Steps at which the child evaluates on held-out data (ASHA rungs). */
  evalAt: number[];
}

/**
 * Builds and validates (with the trainer's own validator, so the job fails
 * with every problem listed instead of a crashing child) the config.
 */
export function buildTrainConfig(
  d: TrainJobData,
  roots: Roots,
  opts: { gpuRankThreads: number } = { gpuRankThreads: 2 },
): TrainChildPlan {
  const output = trialDir(roots.artifactRoot, d.runId, d.trialId);
  const t = d.training;
  const maxSteps = d.totalSteps ?? t.steps;
  const evalAt = d.asha?.rungs ?? [];
  const wantsEval = d.asha !== undefined || isHeldOutMetric(d.objective.metric);
  const config: Record<string, unknown> = {
    model: modelSpec(d.model, roots.modelRoot),
    data: dataSpec(d, roots.dataRoot),
    method: d.method,
    hyperparameters: d.hyperparameters,
    training: {
      ...(maxSteps !== undefined && maxSteps !== null ? { maxSteps } : {}),
      ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
      batchSize: t.batchSize,
      microBatchSize: t.microBatch,
      learningRate: t.learningRate,
      warmupRatio: t.warmupRatio,
      seed: t.seed,
      checkpointEvery: t.checkpointEvery,
      // Optimizer fields the spec gave (the spec's training block carries the training config's fields).
      ...optionalTraining(t),
    },
    cutoff: t.cutoff,
    ...(t.lora !== undefined ? { lora: t.lora } : {}),
    output,
    // One CPU slot is one core, so a CPU rank runs one thread; GPU ranks see
    // their GPU as cuda:0 (the launcher sets CUDA_VISIBLE_DEVICES).
    threads: d.slots.device === 'cpu' ? 1 : opts.gpuRankThreads,
    device: d.slots.device === 'cpu' ? 'cpu' : 'cuda:0',
    // The trainer takes the spec's fp32/bf16/fp16 names (fp16 turns dynamic loss scaling on).
    ...(t.dtype !== undefined ? { dtype: t.dtype } : {}),
    ...(t.activationCheckpointing ? { activationCheckpointing: true } : {}),
    ...(wantsEval ? { eval: { at: evalAt, every: 0 } } : {}),
  };
  try {
    parseTrainConfig(structuredClone(config), output);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new JobConfigError(`invalid training config for this job: ${err.message}`);
    throw err;
  }
  return { config, output, evalAt };
}
