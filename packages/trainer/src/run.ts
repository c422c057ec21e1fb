// One training run from a validated config: load the model and data, reuse or
// compute the reference scores, and drive the loop (resuming when the output
// folder holds a checkpoint).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Encoders } from '@mpo/data';
import { fromHfConfig, type LlamaConfig, Model } from '@mpo/engine';
import { getObjective } from '@mpo/objectives';
import { resolveBuiltinModel } from './builtins.js';
import { resumeHash, type TrainConfig } from './config.js';
import { buildDataset } from './dataset.js';
import { heldOutRewardGap } from './evaluate.js';
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
import type { Communicator } from './types.js';

const noEncoders: Encoders = {
  encodePrompt: () => {
    throw new Error('pre-tokenized data needs no encoder');
  },
  encodeResponse: () => {
    throw new Error('pre-tokenized data needs no encoder');
  },
};

/** What a model folder holds besides its weights that decides how text becomes ids. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

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

/** Loads the config's initial model: a Hugging Face folder, a builtin, or a seeded random init. */
export async function loadInitialModel(
  config: TrainConfig,
  resolveBuiltin: (id: string) => string = resolveBuiltinModel,
): Promise<Model> {
  const opts = { threads: config.threads, device: config.device as 'cpu', dtype: config.dtype };
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
  const modelOpts = { threads: config.threads, device: config.device as 'cpu', dtype: config.dtype };
  const initial = await loadInitialModel(config, opts.resolveBuiltin);
  const objective = getObjective(config.method);
  const req = objective.requirements(config.hyperparameters);

  const modelDir =
    typeof config.model === 'string'
      ? config.model.startsWith('builtin:')
        ? opts.resolveBuiltin(config.model)
        : config.model
      : null;
  let template: string = config.template ?? 'none';
  let encoders: Encoders;
  if (opts.encoders) encoders = opts.encoders;
  else if (config.data.format === 'pretokenized') encoders = noEncoders;
  else {
    const t = await resolveTokenization({
      modelDir,
      architecture: initial.config.architecture,
      vocabSize: initial.config.vocabSize,
      ...(config.tokenizer ? { tokenizer: config.tokenizer } : {}),
      ...(config.template ? { template: config.template } : {}),
    });
    encoders = t.encoders;
    template = t.template;
  }
  const data = buildDataset(config.data, encoders, config.cutoff, { vocabSize: initial.config.vocabSize });
  log({
    type: 'data',
    examples: data.examples.length,
    dropped: data.dropped.length,
    languages: data.languages,
  });
  if (data.examples.length === 0) throw new Error(`data: no usable examples in ${config.data.path}`);

  const refRequests = req.reference.filter(precomputable);
  const key = referenceCacheKey({
    weightsHash: initial.weightsHash(),
    dataHash: datasetHash(data.examples),
    template,
    cutoff: config.cutoff,
    requests: refRequests,
  });
  const ref = await cachedReference(config.referenceCache, key, () =>
    computeReference(initial, data.examples, refRequests, config.training.microBatchSize),
  );
  log({ type: 'reference', cacheHit: ref.hit, path: ref.path });

  // KL on logits needs the frozen initial model's distributions at train time.
  const needsKl = req.policy.some((r) => r.kl);
  const klReference = needsKl ? await loadInitialModel(config, opts.resolveBuiltin) : undefined;

  const evalSpec = config.eval;
  const heldOut = evalSpec
    ? buildDataset(
        {
          ...config.data,
          split: 'heldout',
          ...(evalSpec.limit !== undefined ? { limit: evalSpec.limit } : {}),
        },
        encoders,
        config.cutoff,
        { vocabSize: initial.config.vocabSize },
      ).examples
    : [];

  const configHash = resumeHash(config);
  const result = await trainLoop({
    examples: data.examples,
    objective,
    hyperparameters: config.hyperparameters,
    training: config.training,
    output: config.output,
    model: initial as unknown as TrainableModel,
    loadFrom: async (dir) => {
      initial.dispose();
      return (await Model.load(dir, modelOpts)) as unknown as TrainableModel;
    },
    reference: ref.scores,
    ...(klReference ? { klReference: klReference as unknown as TrainableModel } : {}),
    configHash,
    hashCheckEvery: opts.hashCheckEvery ?? 10,
    ...(evalSpec && heldOut.length > 0
      ? {
          evaluate: (m: TrainableModel) => heldOutRewardGap(m, heldOut, config.training.microBatchSize),
          evalAt: (step: number, total: number) =>
            step === total ||
            evalSpec.at.includes(step) ||
            (evalSpec.every > 0 && step % evalSpec.every === 0),
        }
      : {}),
    ...(opts.comm ? { comm: opts.comm } : {}),
    ...(opts.hooks ? { hooks: opts.hooks } : {}),
  });
  klReference?.dispose();

  let finalDir: string | null = null;
  if (!result.stopped && (opts.comm?.rank ?? 0) === 0) {
    finalDir = join(config.output, 'final');
    mkdirSync(finalDir, { recursive: true });
    await result.model.save(finalDir);
    // The trained model reads text as its initial model did: carry the tokenizer files over.
    for (const f of TOKENIZER_FILES)
      if (modelDir && existsSync(join(modelDir, f))) copyFileSync(join(modelDir, f), join(finalDir, f));
    writeFileSync(
      join(finalDir, 'training.json'),
      `${JSON.stringify({ method: config.method, hyperparameters: config.hyperparameters, training: config.training, steps: result.step, weightsHash: result.model.weightsHash() }, null, 2)}\n`,
    );
  }
  return {
    ...result,
    examples: data.examples.length,
    dropped: data.dropped.length,
    referenceCacheHit: ref.hit,
    finalDir,
  };
}

export { totalStepsOf };
