// `mpo train --config FILE.json`: the training config, its defaults, and a
// validator that lists every problem (path and reason) rather than the first.
import { createHash } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import {
  isMethodName,
  isPresetName,
  methodNames,
  PRESETS,
  type PresetName,
  presetConflict,
  presetNames,
  validateHyperparameters,
} from '@mpo/objectives';
import { resolveBuiltinData } from './builtins.js';
import type { TrainingParams } from './loop.js';
import { type LoraSpec, parseLoraSpec } from './lora.js';
import { LOSS_SCALING_DEFAULTS, type LossScaling } from './loss-scale.js';

export const DATA_FORMATS = ['mpo', 'pairwise', 'pretokenized', 'alpaca'] as const;
export type DataFormat = (typeof DATA_FORMATS)[number];
export const TEMPLATES = ['byte', 'llama3', 'qwen2', 'gemma', 'plain'] as const;
export const SPLITS = ['train', 'heldout', 'all'] as const;

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

export interface Problem {
  path: string;
  reason: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: Problem[]) {
    super(`invalid training config:\n${problems.map((p) => `  ${p.path}: ${p.reason}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Validates a parsed config and fills defaults. Relative paths resolve
 * against `baseDir` (the config file's folder). Throws ConfigError listing
 * every problem.
 */
export function parseTrainConfig(raw: unknown, baseDir = process.cwd()): TrainConfig {
  const problems: Problem[] = [];
  const bad = (path: string, reason: string) => problems.push({ path, reason });
  if (!isObj(raw)) throw new ConfigError([{ path: '(root)', reason: 'must be a JSON object' }]);
  const known = new Set([
    'model',
    'tokenizer',
    'template',
    'data',
    'method',
    'hyperparameters',
    'training',
    'cutoff',
    'output',
    'referenceCache',
    'threads',
    'device',
    'dtype',
    'activationCheckpointing',
    'lossScaling',
    'eval',
    '$schema',
    'name',
    'preset',
    'lora',
  ]);
  for (const k of Object.keys(raw)) if (!known.has(k)) bad(k, 'unknown field');
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));

  let model: ModelSpec = '';
  if (typeof raw.model === 'string' && raw.model.length > 0) {
    model = raw.model.startsWith('builtin:') ? raw.model : abs(raw.model);
  } else if (isObj(raw.model) && isObj(raw.model.init)) {
    const seed = raw.model.seed ?? 0;
    if (!Number.isInteger(seed)) bad('model.seed', 'must be an integer');
    model = { init: raw.model.init, seed: seed as number };
  } else bad('model', 'required: a model directory, a builtin id, or {"init": {...config}, "seed": n}');

  const template = raw.template;
  if (template !== undefined && !TEMPLATES.includes(template as never)) {
    bad('template', `must be one of ${TEMPLATES.join(', ')}`);
  }
  if (raw.tokenizer !== undefined && typeof raw.tokenizer !== 'string')
    bad('tokenizer', 'must be a path or "byte"');

  let data = {} as DataSpec;
  if (!isObj(raw.data)) bad('data', 'required: {"format", "path", ...}');
  else {
    const d = { ...raw.data };
    if (typeof d.path === 'string' && d.path.startsWith('builtin:')) {
      try {
        const b = resolveBuiltinData(d.path);
        d.path = b.path;
        d.format ??= b.format;
      } catch (err) {
        bad('data.path', (err as Error).message);
      }
    }
    if (!DATA_FORMATS.includes(d.format as never))
      bad('data.format', `must be one of ${DATA_FORMATS.join(', ')}`);
    if (typeof d.path !== 'string' || !d.path) bad('data.path', 'required');
    const heldOut = d.heldOut ?? 0.1;
    if (typeof heldOut !== 'number' || heldOut < 0 || heldOut >= 1)
      bad('data.heldOut', 'must be a number in [0, 1)');
    const split = d.split ?? 'train';
    if (!SPLITS.includes(split as never)) bad('data.split', `must be one of ${SPLITS.join(', ')}`);
    if (
      d.languages !== undefined &&
      !(Array.isArray(d.languages) && d.languages.every((l) => typeof l === 'string'))
    ) {
      bad('data.languages', 'must be an array of language codes');
    }
    if (d.limit !== undefined && !(Number.isInteger(d.limit) && (d.limit as number) > 0))
      bad('data.limit', 'must be a positive integer');
    if (d.splitSeed !== undefined && !Number.isInteger(d.splitSeed))
      bad('data.splitSeed', 'must be an integer');
    if (d.dominantLanguage !== undefined && typeof d.dominantLanguage !== 'string')
      bad('data.dominantLanguage', 'must be a language code');
    data = {
      format: d.format as DataFormat,
      path: typeof d.path === 'string' && !d.path.startsWith('builtin:') ? abs(d.path) : '',
      heldOut: heldOut as number,
      split: split as DataSpec['split'],
      splitSeed: (d.splitSeed as number | undefined) ?? 0,
      ...(d.dominantLanguage !== undefined ? { dominantLanguage: d.dominantLanguage as string } : {}),
      ...(d.languages !== undefined ? { languages: d.languages as string[] } : {}),
      ...(d.limit !== undefined ? { limit: d.limit as number } : {}),
    };
  }

  // A preset (MPO's per-backbone values, packages/objectives presets.ts) fills method, β, training fields and
  // cutoff; whatever the config states itself wins.
  let preset: PresetName | undefined;
  if (raw.preset !== undefined) {
    if (!isPresetName(raw.preset)) bad('preset', `must be one of ${presetNames.join(', ')}`);
    else {
      const conflict = presetConflict(raw.preset, raw.method);
      if (conflict) bad('preset', conflict);
      else preset = raw.preset;
    }
  }
  const p = preset ? PRESETS[preset] : undefined;
  const method = raw.method ?? p?.method;
  if (!isMethodName(method)) bad('method', `must be one of ${methodNames.join(', ')}`);
  const hyperparameters =
    p && isObj(raw.hyperparameters ?? {})
      ? { ...p.hyperparameters, ...(raw.hyperparameters as object | undefined) }
      : (raw.hyperparameters ?? {});
  if (!isObj(hyperparameters)) bad('hyperparameters', 'must be an object');
  else if (isMethodName(method)) {
    for (const p of validateHyperparameters(method, hyperparameters))
      bad(`hyperparameters${p.path ? `.${p.path}` : ''}`, p.reason);
  }

  const training = { ...TRAINING_DEFAULTS, ...p?.training } as TrainingParams;
  if (raw.training !== undefined && !isObj(raw.training)) bad('training', 'must be an object');
  const tr = isObj(raw.training) ? raw.training : {};
  const rules: Record<keyof TrainingParams, [number, number, boolean]> = {
    // [min, max, integer]
    epochs: [1, 1e6, true],
    maxSteps: [1, 1e9, true],
    batchSize: [1, 1e6, true],
    microBatchSize: [1, 1e6, true],
    learningRate: [0, 1, false],
    warmupRatio: [0, 1, false],
    weightDecay: [0, 10, false],
    maxGradNorm: [0, 1e9, false],
    adamBeta1: [0, 0.999999, false],
    adamBeta2: [0, 0.999999999, false],
    adamEps: [0, 1, false],
    seed: [0, 2 ** 32 - 1, true],
    checkpointEvery: [0, 1e9, true],
    keepCheckpoints: [0, 1e6, true],
    zeroStage: [0, 2, true],
  };
  for (const [k, v] of Object.entries(tr)) {
    const rule = rules[k as keyof TrainingParams];
    if (!rule) {
      bad(`training.${k}`, 'unknown field');
      continue;
    }
    const [min, max, int] = rule;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
      bad(`training.${k}`, `must be ${int ? 'an integer' : 'a number'} in [${min}, ${max}]`);
    } else (training as unknown as Record<string, number>)[k] = v;
  }
  if (training.microBatchSize > training.batchSize)
    bad('training.microBatchSize', 'must not exceed training.batchSize');

  const cutoff = raw.cutoff ?? p?.cutoff ?? 1024;
  if (!Number.isInteger(cutoff) || (cutoff as number) < 2) bad('cutoff', 'must be an integer ≥ 2');
  if (typeof raw.output !== 'string' || !raw.output) bad('output', 'required: the output directory');
  const threads = raw.threads ?? 1;
  if (!Number.isInteger(threads) || (threads as number) < 1) bad('threads', 'must be a positive integer');
  const device = raw.device ?? 'cpu';
  if (typeof device !== 'string' || !/^(cpu|cuda:\d+)$/.test(device))
    bad('device', 'must be "cpu" or "cuda:N"');
  const dtype = DTYPE_ALIASES[raw.dtype as string] ?? raw.dtype ?? 'float32';
  if (!['float32', 'bfloat16', 'float16'].includes(dtype as string))
    bad('dtype', 'must be float32 (fp32), bfloat16 (bf16) or float16 (fp16)');
  if (raw.activationCheckpointing !== undefined && typeof raw.activationCheckpointing !== 'boolean')
    bad('activationCheckpointing', 'must be true or false');
  const lossScaling = parseLossScaling(raw.lossScaling, dtype === 'float16', bad);
  if (raw.referenceCache !== undefined && typeof raw.referenceCache !== 'string')
    bad('referenceCache', 'must be a path');

  let evalSpec: EvalSpec | undefined;
  if (raw.eval !== undefined) {
    if (!isObj(raw.eval)) bad('eval', 'must be an object {"at": [steps], "every": n, "limit": n}');
    else {
      const e = raw.eval;
      const at = e.at ?? [];
      if (!Array.isArray(at) || !at.every((x) => Number.isInteger(x) && x > 0))
        bad('eval.at', 'must be an array of positive step numbers');
      const every = e.every ?? 0;
      if (!Number.isInteger(every) || (every as number) < 0)
        bad('eval.every', 'must be a non-negative integer');
      if (e.limit !== undefined && !(Number.isInteger(e.limit) && (e.limit as number) > 0))
        bad('eval.limit', 'must be a positive integer');
      for (const k of Object.keys(e))
        if (!['at', 'every', 'limit'].includes(k)) bad(`eval.${k}`, 'unknown field');
      evalSpec = {
        at: at as number[],
        every: every as number,
        ...(e.limit !== undefined ? { limit: e.limit as number } : {}),
      };
    }
    if (isObj(raw.data) && raw.data.heldOut === 0)
      bad('eval', 'needs a held-out split: data.heldOut must be > 0');
  }
  const lora = parseLoraSpec(raw.lora, bad);
  if (problems.length) throw new ConfigError(problems);
  const output = abs(raw.output as string);
  return {
    model,
    ...(raw.tokenizer !== undefined
      ? { tokenizer: raw.tokenizer === 'byte' ? 'byte' : abs(raw.tokenizer as string) }
      : {}),
    ...(template !== undefined ? { template: template as NonNullable<TrainConfig['template']> } : {}),
    data,
    method: method as string,
    hyperparameters: hyperparameters as Record<string, unknown>,
    training,
    cutoff: cutoff as number,
    output,
    referenceCache: raw.referenceCache
      ? abs(raw.referenceCache as string)
      : resolve(output, '..', '.reference-cache'),
    threads: threads as number,
    device: device as string,
    dtype: dtype as TrainConfig['dtype'],
    ...(raw.activationCheckpointing === true ? { activationCheckpointing: true } : {}),
    ...(lossScaling ? { lossScaling } : {}),
    ...(evalSpec ? { eval: evalSpec } : {}),
    ...(preset ? { preset } : {}),
    ...(lora ? { lora } : {}),
  };
}

/** The run spec's short dtype names. */
const DTYPE_ALIASES: Record<string, TrainConfig['dtype']> = {
  fp32: 'float32',
  bf16: 'bfloat16',
  fp16: 'float16',
};

/**
 * lossScaling: true / an object of LossScaling fields (the rest defaulted) turns it on, false off;
 * absent: on for float16 only.
 */
function parseLossScaling(
  v: unknown,
  fp16: boolean,
  bad: (path: string, reason: string) => void,
): LossScaling | undefined {
  if (v === undefined) return fp16 ? { ...LOSS_SCALING_DEFAULTS } : undefined;
  if (v === false) return undefined;
  if (v === true) return { ...LOSS_SCALING_DEFAULTS };
  if (!isObj(v)) {
    bad(
      'lossScaling',
      'must be true, false or {"initScale", "growthFactor", "backoffFactor", "growthInterval"}',
    );
    return undefined;
  }
  const out = { ...LOSS_SCALING_DEFAULTS };
  const rules: Record<keyof LossScaling, (x: number) => boolean> = {
    initScale: (x) => x > 0,
    growthFactor: (x) => x >= 1,
    backoffFactor: (x) => x > 0 && x < 1,
    growthInterval: (x) => Number.isInteger(x) && x >= 1,
  };
  for (const [k, x] of Object.entries(v)) {
    const ok = rules[k as keyof LossScaling];
    if (!ok) bad(`lossScaling.${k}`, 'unknown field');
    else if (typeof x !== 'number' || !Number.isFinite(x) || !ok(x))
      bad(`lossScaling.${k}`, k === 'growthInterval' ? 'must be a positive integer' : 'out of range');
    else out[k as keyof LossScaling] = x;
  }
  return out;
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
