// One training run from a validated config: load the model and data, reuse or
// compute the reference scores, and drive the loop (resuming when the output
// folder holds a checkpoint).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Encoders } from '@mpo/data';
import { fromHfConfig, type LlamaConfig, Model } from '@mpo/engine';
import { getObjective, type Requirements } from '@mpo/objectives';
import { resolveBuiltinModel } from './builtins.js';
import { resumeHash, type TrainConfig } from './config.js';
import { buildDataset } from './dataset.js';
import { heldOutRewardGap } from './evaluate.js';
import { type ExportableModel, exportHfFolder } from './export.js';
import { type LoopHooks, type LoopResult, totalStepsOf, trainLoop } from './loop.js';
import type { TrainableModel } from './model.js';
import {
  cachedReference,
  computeReference,
  datasetHash,
  precomputable,
  referenceCacheKey,
} from './reference.js';
import { resolveTokenization } from './tokenization.js';
import type { Communicator, TrainExample } from './types.js';

const noEncoders: Encoders = {
  encodePrompt: () => {
    throw new Error('pre-tokenized data needs no encoder');
  },
  encodeResponse: () => {
    throw new Error('pre-tokenized data needs no encoder');
  },
};

export interface RunOptions {
  hooks?: LoopHooks;
  comm?: Communicator;
  /** With several ranks, compare weight hashes across ranks every N steps (default 10). */
  hashCheckEvery?: number;
  /** Prompt/response encoders; by default the model's tokenizer with the config's (or guessed) template. */
  encoders?: Encoders;
  /** Resolves `builtin:` model ids to a directory (default: the builtins module). */
  resolveBuiltin?: (id: string) => string;
  log?: (event: Record<string, unknown> & { type: string }) => void;
}

export interface RunResult extends LoopResult {
  examples: number;
  dropped: number;
  referenceCacheHit: boolean;
  finalDir: string | null;
}

/** The folder a model spec names (a builtin id resolved), or null for a random init. */
export function resolveModelDir(
  spec: TrainConfig['model'],
  resolveBuiltin = resolveBuiltinModel,
): string | null {
  if (typeof spec !== 'string') return null;
  return spec.startsWith('builtin:') ? resolveBuiltin(spec) : spec;
}

/** Engine options of every model a run loads (the initial one and checkpoints on resume). */
function modelOptionsOf(config: TrainConfig) {
  // bf16 + ZeRO on the CPU: the engine stores the weights in bf16 only and the fp32 masters live
  // sharded in ZeroOptimizer (zero.ts), so no rank holds a full fp32 copy of the model.
  const bf16Weights =
    config.dtype === 'bfloat16' &&
    (config.training.zeroStage ?? 0) > 0 &&
    !config.lora &&
    config.device === 'cpu';
  return {
    threads: config.threads,
    device: config.device as 'cpu',
    dtype: config.dtype,
    activationCheckpointing: config.activationCheckpointing === true,
    ...(bf16Weights ? { weightStorage: 'bfloat16' as const } : {}),
  };
}

/** Loads the config's initial model: a Hugging Face folder, a builtin, or a seeded random init. */
export async function loadInitialModel(
  config: TrainConfig,
  resolveBuiltin: (id: string) => string = resolveBuiltinModel,
): Promise<Model> {
  const opts = modelOptionsOf(config);
  const spec = config.model;
  if (typeof spec === 'string') {
    if (spec.startsWith('builtin:')) {
      return Model.load(resolveBuiltin(spec), opts);
    }
    return Model.load(spec, opts);
  }
  const cfg: LlamaConfig =
    'hidden_size' in spec.init ? fromHfConfig(spec.init) : (spec.init as unknown as LlamaConfig);
  return Model.init(cfg, { seed: spec.seed, ...opts });
}

export async function runTraining(config: TrainConfig, options: RunOptions = {}): Promise<RunResult> {
  const opts = { resolveBuiltin: resolveBuiltinModel, ...options };
  const log = opts.log ?? (() => {});
  const initial = await loadInitialModel(config, opts.resolveBuiltin);
  const objective = getObjective(config.method);
  const req = objective.requirements(config.hyperparameters);

  const modelDir =
    typeof config.model === 'string'
      ? config.model.startsWith('builtin:')
        ? opts.resolveBuiltin(config.model)
        : config.model
      : null;
  const { encoders, template } = await encodersFor(config, initial, modelDir, opts.encoders);
  const data = buildDataset(config.data, encoders, config.cutoff, { vocabSize: initial.config.vocabSize });
  log({
    type: 'data',
    examples: data.examples.length,
    dropped: data.dropped.length,
    languages: data.languages,
  });
  if (data.examples.length === 0) throw new Error(`data: no usable examples in ${config.data.path}`);

  const ref = await referenceScores(config, initial, data.examples, req, template);
  log({ type: 'reference', cacheHit: ref.hit, path: ref.path });

  // LoRA: the reference above was scored by the base weights; from here on they are frozen and
  // only the adapters train (their dropout seeded by the run's seed).
  if (config.lora) {
    initial.enableLora({ ...config.lora, seed: config.training.seed });
    log({ type: 'lora', ...config.lora, trainableParameters: initial.numParameters });
  }
  // KL on logits needs the frozen initial model's distributions at train time. With LoRA that is
  // the model itself: reference forwards run with the adapters off, so no second copy is loaded.
  const needsKl = req.policy.some((r) => r.kl);
  const klReference = !needsKl
    ? undefined
    : config.lora
      ? initial
      : await loadInitialModel(config, opts.resolveBuiltin);

  const configHash = resumeHash(config);
  const result = await trainLoop({
    log,
    examples: data.examples,
    objective,
    hyperparameters: config.hyperparameters,
    training: config.training,
    output: config.output,
    model: initial as unknown as TrainableModel,
    loadFrom: checkpointLoader(config, initial),
    reference: ref.scores,
    ...(klReference ? { klReference: klReference as unknown as TrainableModel } : {}),
    configHash,
    hashCheckEvery: opts.hashCheckEvery ?? 10,
    threads: config.threads,
    ...(config.lossScaling ? { lossScaling: config.lossScaling } : {}),
    ...heldOutEvaluation(config, encoders, initial.config.vocabSize),
    ...(opts.comm ? { comm: opts.comm } : {}),
    ...(opts.hooks ? { hooks: opts.hooks } : {}),
  });
  if (klReference !== initial) klReference?.dispose();

  const finalDir =
    !result.stopped && (opts.comm?.rank ?? 0) === 0
      ? await exportFinal(config, result.model, result.step, modelDir)
      : null;
  return {
    ...result,
    examples: data.examples.length,
    dropped: data.dropped.length,
    referenceCacheHit: ref.hit,
    finalDir,
  };
}

/** How the loop loads a checkpoint's weights when it resumes. */
function checkpointLoader(config: TrainConfig, initial: Model) {
  const modelOpts = modelOptionsOf(config);
  return async (dir: string): Promise<TrainableModel> => {
    if (config.lora) {
      // The base never changes: only the adapters come from the checkpoint.
      await initial.loadAdapter(dir);
      return initial as unknown as TrainableModel;
    }
    initial.dispose();
    return (await Model.load(dir, modelOpts)) as unknown as TrainableModel;
  };
}

/** The tokenizer and chat template for the data: given, none for pretokenized data, else resolved from the model. */
async function encodersFor(
  config: TrainConfig,
  initial: Model,
  modelDir: string | null,
  given: Encoders | undefined,
): Promise<{ encoders: Encoders; template: string }> {
  if (given) return { encoders: given, template: config.template ?? 'none' };
  if (config.data.format === 'pretokenized')
    return { encoders: noEncoders, template: config.template ?? 'none' };
  return resolveTokenization({
    modelDir,
    architecture: initial.config.architecture,
    vocabSize: initial.config.vocabSize,
    ...(config.tokenizer ? { tokenizer: config.tokenizer } : {}),
    ...(config.template ? { template: config.template } : {}),
  });
}

/** The reference model's scores of every example, from the cache when the weights, data and template match. */
function referenceScores(
  config: TrainConfig,
  initial: Model,
  examples: TrainExample[],
  req: Requirements,
  template: string,
) {
  const refRequests = req.reference.filter(precomputable);
  const key = referenceCacheKey({
    weightsHash: initial.weightsHash(),
    dataHash: datasetHash(examples),
    template,
    cutoff: config.cutoff,
    requests: refRequests,
  });
  return cachedReference(config.referenceCache, key, () =>
    computeReference(initial, examples, refRequests, config.training.microBatchSize),
  );
}

/** The loop's held-out evaluation (reward gap on the held-out split) and the steps it runs after; none without `eval`. */
function heldOutEvaluation(config: TrainConfig, encoders: Encoders, vocabSize: number) {
  const evalSpec = config.eval;
  if (!evalSpec) return {};
  const heldOut = buildDataset(
    {
      ...config.data,
      split: 'heldout',
      ...(evalSpec.limit !== undefined ? { limit: evalSpec.limit } : {}),
    },
    encoders,
    config.cutoff,
    { vocabSize },
  ).examples;
  if (heldOut.length === 0) return {};
  return {
    evaluate: (m: TrainableModel) => heldOutRewardGap(m, heldOut, config.training.microBatchSize),
    evalAt: (step: number, total: number) =>
      step === total || evalSpec.at.includes(step) || (evalSpec.every > 0 && step % evalSpec.every === 0),
  };
}

/**
 * final/: the trained weights as a Hugging Face folder with training.json. LoRA: final/ holds the
 * merged weights and adapter/ the PEFT adapter files.
 */
async function exportFinal(
  config: TrainConfig,
  model: TrainableModel,
  steps: number,
  modelDir: string | null,
) {
  const finalDir = join(config.output, 'final');
  mkdirSync(finalDir, { recursive: true });
  // LoRA: final/ holds the merged weights (an ordinary Hugging Face folder) and adapter/ the
  // PEFT adapter files.
  const trained = model as unknown as Model;
  const exported = config.lora ? trained.mergedModel() : trained;
  if (config.lora) await trained.saveAdapter(join(config.output, 'adapter'), { baseModel: modelDir });
  await exportHfFolder(exported as unknown as ExportableModel, finalDir, {
    sourceDir: modelDir,
    tokenizerDir:
      config.tokenizer === 'byte' ? null : (config.tokenizer?.replace(/\/tokenizer\.json$/, '') ?? modelDir),
  });
  writeFileSync(
    join(finalDir, 'training.json'),
    `${JSON.stringify({ method: config.method, hyperparameters: config.hyperparameters, training: config.training, ...(config.lora ? { lora: config.lora } : {}), steps, weightsHash: exported.weightsHash() }, null, 2)}\n`,
  );
  if (exported !== trained) exported.dispose();
  return finalDir;
}

export { totalStepsOf };
