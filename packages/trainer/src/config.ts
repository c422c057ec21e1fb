// `mpo train --config FILE` (JSON or YAML): the training config, validated by its
// TypeBox schema (@mpo/queue train-config.ts, published as schemas/train-config.schema.json),
// then the cross-field checks and the defaults. Every problem is listed (path and reason).

import { createHash } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { isObject } from '@mpo/data';
import {
  isMethodName,
  methodNames,
  PRESETS,
  type PresetName,
  presetConflict,
  validateHyperparameters,
} from '@mpo/objectives';
import {
  DATA_FORMATS,
  type DataFormat,
  DTYPE_SHORT_NAMES,
  type Problem,
  SPLITS,
  schemaProblems,
  TEMPLATES,
  type TrainConfigInput,
  TrainConfigSchema,
} from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import { resolveBuiltinData } from './builtins.js';
import type { TrainingParams } from './loop.js';
import { type LoraSpec, parseLoraSpec } from './lora.js';
import { LOSS_SCALING_DEFAULTS, type LossScaling } from './loss-scale.js';

// The lists live with the schema (one definition); re-exported for the trainer's users.
export { DATA_FORMATS, type DataFormat, SPLITS, TEMPLATES };

export interface DataSpec {
  format: DataFormat;
  path: string;
  /** MPO JSON: dominant language of the source side (default: the loader's guess from the file). */
  dominantLanguage?: string;
  /** Keep only these target languages. */
  languages?: string[];
  /** Share of prompt groups held out (split by prompt, so translations never straddle). */
  heldOut: number;
  split: (typeof SPLITS)[number];
  splitSeed: number;
  /** Use at most this many examples (after the split), for smoke runs. */
  limit?: number;
}

export type ModelSpec = string | { init: Record<string, unknown>; seed: number };

/** Held-out reward-gap evaluation during training (the cheap metric ASHA rungs compare). */
export interface EvalSpec {
  /** Evaluate after these steps (1-based). */
  at: number[];
  /** ...and every this many steps (0 = only `at` and the last step). */
  every: number;
  /** At most this many held-out examples. */
  limit?: number;
}

export interface TrainConfig {
  model: ModelSpec;
  tokenizer?: string;
  /** Chat template; guessed from the model's architecture and tokenizer when absent. */
  template?: (typeof TEMPLATES)[number];
  data: DataSpec;
  method: string;
  hyperparameters: Record<string, unknown>;
  training: TrainingParams;
  cutoff: number;
  output: string;
  referenceCache: string;
  threads: number;
  device: string;
  dtype: 'float32' | 'bfloat16' | 'float16';
  /** Recompute each decoder layer's activations in backward instead of keeping them. */
  activationCheckpointing?: boolean;
  /** Dynamic loss scaling; on by default for float16 (GradScaler's defaults), off otherwise. */
  lossScaling?: LossScaling;
  eval?: EvalSpec;
  /** Backbone preset (paper Table 8 / Appendix G) whose values filled what the config left out. */
  preset?: PresetName;
  /** Train LoRA adapters on the frozen model instead of every weight (lora.ts). */
  lora?: LoraSpec;
}

export const TRAINING_DEFAULTS: TrainingParams = {
  epochs: 1,
  batchSize: 8,
  microBatchSize: 2,
  learningRate: 1e-5,
  warmupRatio: 0.1,
  weightDecay: 0,
  maxGradNorm: 1,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEps: 1e-8,
  seed: 42,
  checkpointEvery: 0,
  keepCheckpoints: 2,
};

export type { Problem };

/** A config rejected with every problem found, one a line under `invalid <what>:` (what the CLI prints). */
export class ConfigProblemsError extends Error {
  constructor(
    what: string,
    readonly problems: Problem[],
  ) {
    super(`invalid ${what}:\n${problems.map((p) => `  ${p.path}: ${p.reason}`).join('\n')}`);
  }
}

export class ConfigError extends ConfigProblemsError {
  constructor(problems: Problem[]) {
    super('training config', problems);
    this.name = 'ConfigError';
  }
}

/**
 * Validates a parsed config against the training config schema (@mpo/queue train-config.ts), runs the
 * cross-field checks a schema cannot say, and fills defaults. Relative paths resolve against `baseDir` (the
 * config file's folder). Throws ConfigError listing every problem.
 */
export function parseTrainConfig(raw: unknown, baseDir = process.cwd()): TrainConfig {
  // Long: the training config's cross-field checks after the schema's, each a line or two, collected in one pass like validateRunSpec's sections.
  if (!isObject(raw)) throw new ConfigError([{ path: '(root)', reason: 'must be a JSON object' }]);
  const problems = schemaProblems(TrainConfigSchema, raw);
  const bad = (path: string, reason: string) => {
    if (!problems.some((p) => p.path === path)) problems.push({ path, reason });
  };
  // A field the schema rejected is not looked at again (its problem stands).
  const clean = (path: string) =>
    !problems.some((p) => p.path === path || p.path.startsWith(`${path}.`) || p.path.startsWith(`${path}[`));
  const c = raw as Partial<TrainConfigInput>;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));

  // Only a builtin id brings its own format.
  if (isObject(c.data) && c.data.format === undefined && !String(c.data.path).startsWith('builtin:'))
    bad('data.format', `must be one of ${DATA_FORMATS.join(', ')}`);
  const data = clean('data') && c.data ? dataSpec(c.data, abs, bad) : undefined;
  // A preset (MPO's per-backbone values, packages/objectives presets.ts) fills method, β, training fields and
  // cutoff; whatever the config states itself wins.
  let preset: PresetName | undefined;
  if (c.preset !== undefined && clean('preset')) {
    const conflict = presetConflict(c.preset, c.method);
    if (conflict) bad('preset', conflict);
    else preset = c.preset;
  }
  const p = preset ? PRESETS[preset] : undefined;
  const method = c.method ?? p?.method;
  if (!isMethodName(method)) bad('method', `must be one of ${methodNames.join(', ')}`);
  const hyperparameters = { ...p?.hyperparameters, ...(clean('hyperparameters') ? c.hyperparameters : {}) };
  if (isMethodName(method) && clean('hyperparameters')) {
    for (const h of validateHyperparameters(method, hyperparameters))
      bad(`hyperparameters${h.path ? `.${h.path}` : ''}`, h.reason);
  }
  const training = { ...TRAINING_DEFAULTS, ...p?.training, ...c.training } as TrainingParams;
  if (
    clean('training.batchSize') &&
    clean('training.microBatchSize') &&
    training.microBatchSize > training.batchSize
  )
    bad('training.microBatchSize', 'must not exceed training.batchSize');
  const dtype = (
    c.dtype ? (DTYPE_SHORT_NAMES[c.dtype as keyof typeof DTYPE_SHORT_NAMES] ?? c.dtype) : 'float32'
  ) as TrainConfig['dtype'];
  if (c.eval !== undefined && c.data?.heldOut === 0)
    bad('eval', 'needs a held-out split: data.heldOut must be > 0');
  // PEFT's defaults fill what the config leaves out (lora.ts); the schema has checked the fields.
  const lora = parseLoraSpec((raw as Record<string, unknown>).lora, bad);
  if (problems.length || !data) throw new ConfigError(problems);
  const output = abs(c.output as string);
  const model = c.model as TrainConfigInput['model'];
  const lossScaling = lossScalingOf(c.lossScaling, dtype === 'float16');
  return {
    model:
      typeof model === 'string'
        ? model.startsWith('builtin:')
          ? model
          : abs(model)
        : { init: model.init, seed: model.seed ?? 0 },
    ...(c.tokenizer !== undefined ? { tokenizer: c.tokenizer === 'byte' ? 'byte' : abs(c.tokenizer) } : {}),
    ...(c.template !== undefined ? { template: c.template } : {}),
    data,
    method: method as string,
    hyperparameters,
    training,
    cutoff: c.cutoff ?? p?.cutoff ?? 1024,
    output,
    referenceCache: c.referenceCache ? abs(c.referenceCache) : resolve(output, '..', '.reference-cache'),
    threads: c.threads ?? 1,
    device: c.device ?? 'cpu',
    dtype,
    ...(c.activationCheckpointing === true ? { activationCheckpointing: true } : {}),
    ...(lossScaling ? { lossScaling } : {}),
    ...(c.eval
      ? {
          eval: {
            at: c.eval.at ?? [],
            every: c.eval.every ?? 0,
            ...(c.eval.limit !== undefined ? { limit: c.eval.limit } : {}),
          },
        }
      : {}),
    ...(preset ? { preset } : {}),
    ...(lora ? { lora } : {}),
  };
}

/** The data block with a builtin id resolved to its file (and format), defaults filled. */
function dataSpec(
  d: TrainConfigInput['data'],
  abs: (p: string) => string,
  bad: (path: string, reason: string) => void,
): DataSpec | undefined {
  let path = d.path;
  let format = d.format;
  if (path.startsWith('builtin:')) {
    try {
      const b = resolveBuiltinData(path);
      path = b.path;
      format ??= b.format;
    } catch (err) {
      bad('data.path', errorMessage(err));
      return undefined;
    }
  } else path = abs(path);
  return {
    format: format as DataFormat,
    path,
    heldOut: d.heldOut ?? 0.1,
    split: d.split ?? 'train',
    splitSeed: d.splitSeed ?? 0,
    ...(d.dominantLanguage !== undefined ? { dominantLanguage: d.dominantLanguage } : {}),
    ...(d.languages !== undefined ? { languages: d.languages } : {}),
    ...(d.limit !== undefined ? { limit: d.limit } : {}),
  };
}

/** lossScaling: true / an object (the rest defaulted) turns it on, false off; absent: on for float16 only. */
function lossScalingOf(v: TrainConfigInput['lossScaling'], fp16: boolean): LossScaling | undefined {
  if (v === undefined) return fp16 ? { ...LOSS_SCALING_DEFAULTS } : undefined;
  if (v === false) return undefined;
  return { ...LOSS_SCALING_DEFAULTS, ...(v === true ? {} : v) };
}

/**
 * Hash of the fields a resume must not change (everything that shapes the
 * computation; not the output folder, the evaluation or checkpoint cadence).
 */
export function resumeHash(c: TrainConfig): string {
  // Activation checkpointing changes memory, not the arithmetic: a resume may switch it.
  const { output: _o, referenceCache: _r, eval: _e, activationCheckpointing: _a, ...rest } = c;
  const { checkpointEvery: _c, keepCheckpoints: _k, ...training } = rest.training;
  return createHash('sha256')
    .update(JSON.stringify({ ...rest, training }))
    .digest('hex')
    .slice(0, 16);
}
