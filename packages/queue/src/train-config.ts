// The training config: ONE TypeBox schema, with the trainer's names, used by
// `mpo train` (packages/trainer config.ts validates against it, then fills
// defaults and runs the cross-field checks a schema cannot say), by run specs
// (spec.ts derives the `training` block from `TrainingFields`) and by the
// worker (which writes this config for its `mpo train` child). The JSON Schema
// files in schemas/ are generated from here (scripts/gen-schemas.mjs) and a
// test keeps them up to date.
import { presetNames } from '@mpo/objectives';
import { type Static, type TLiteral, Type } from '@sinclair/typebox';

export const DATA_FORMATS = ['mpo', 'pairwise', 'pretokenized', 'alpaca'] as const;
export type DataFormat = (typeof DATA_FORMATS)[number];
export const TEMPLATES = ['byte', 'llama3', 'qwen2', 'gemma', 'plain'] as const;
export const SPLITS = ['train', 'heldout', 'all'] as const;
/** Precision, by the trainer's names; the short names (the run spec's) are accepted too. */
export const TRAIN_DTYPES = ['float32', 'bfloat16', 'float16'] as const;
export const DTYPE_SHORT_NAMES = { fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' } as const;

const literals = <const T extends readonly string[]>(values: T, description?: string) =>
  Type.Union(values.map((v) => Type.Literal(v)) as TLiteral<T[number]>[], {
    description: description ?? `one of ${values.join(', ')}`,
  });

const int = (minimum: number, maximum: number, description?: string) =>
  Type.Optional(Type.Integer({ minimum, maximum, ...(description ? { description } : {}) }));
const num = (minimum: number, maximum: number, description?: string) =>
  Type.Optional(Type.Number({ minimum, maximum, ...(description ? { description } : {}) }));

/**
 * The optimisation fields (config `training` block). Maxima: what a run could
 * sensibly ask for (10M steps, the run spec's limit), so a typo fails here and
 * not hours later.
 */
export const TrainingFields = Type.Object(
  {
    epochs: int(1, 10_000, 'passes over the data (default 1); ignored when maxSteps is given'),
    maxSteps: int(1, 10_000_000, 'optimizer steps; overrides epochs'),
    batchSize: int(1, 1_000_000, 'examples per optimizer step, over all ranks (default 8)'),
    microBatchSize: int(
      1,
      1_000_000,
      'examples per forward/backward; gradients accumulate up to batchSize (default 2)',
    ),
    learningRate: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1,
        description: 'peak learning rate of the cosine schedule (default 1e-5)',
      }),
    ),
    warmupRatio: num(0, 1, 'share of the steps spent in linear warm-up (default 0.1)'),
    weightDecay: num(0, 10, 'AdamW decoupled weight decay (default 0)'),
    maxGradNorm: num(0, 1e9, 'gradient clipping by global norm (default 1; 0 = off)'),
    adamBeta1: num(0, 0.999999, 'default 0.9'),
    adamBeta2: num(0, 0.999999999, 'default 0.999'),
    adamEps: num(0, 1, 'default 1e-8'),
    seed: int(0, 2 ** 32 - 1, 'default 42'),
    checkpointEvery: int(0, 10_000_000, 'steps between checkpoints (0 = only the last)'),
    keepCheckpoints: int(0, 1_000_000, 'checkpoints kept (default 2)'),
    zeroStage: int(0, 2, 'ZeRO: 0 off, 1 optimizer state sharded, 2 and gradients reduce-scattered'),
  },
  { additionalProperties: false },
);
export type TrainingFieldsInput = Static<typeof TrainingFields>;

export const DtypeField = literals(
  [...TRAIN_DTYPES, ...(Object.keys(DTYPE_SHORT_NAMES) as (keyof typeof DTYPE_SHORT_NAMES)[])],
  'float32 (fp32), bfloat16 (bf16) or float16 (fp16)',
);
export const ActivationCheckpointingField = Type.Boolean({
  description: 'recompute each decoder layer in backward instead of keeping its activations',
});
export const CutoffField = Type.Integer({
  minimum: 2,
  maximum: 1_000_000,
  description: 'maximum tokens per sequence (default 1024)',
});
export const PresetField = Type.Union(
  presetNames.map((v) => Type.Literal(v)),
  {
    title:
      'MPO\'s values for a backbone from the paper (Table 8, Appendix G); method must be "mpo", fields the config states win',
    description: `one of ${presetNames.join(', ')}`,
  },
);

const LossScalingObject = Type.Object(
  {
    initScale: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'default 65536' })),
    growthFactor: Type.Optional(Type.Number({ minimum: 1, description: 'default 2' })),
    backoffFactor: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, description: 'default 0.5' }),
    ),
    growthInterval: Type.Optional(Type.Integer({ minimum: 1, description: 'default 2000' })),
  },
  { additionalProperties: false },
);

const DataSpec = Type.Object(
  {
    format: Type.Optional(literals(DATA_FORMATS)),
    path: Type.String({ minLength: 1, description: 'a file, or a builtin id ("builtin:mpo-llama")' }),
    dominantLanguage: Type.Optional(Type.String({ description: 'language of the source side (MPO data)' })),
    languages: Type.Optional(Type.Array(Type.String(), { description: 'keep only these target languages' })),
    heldOut: Type.Optional(
      Type.Number({ minimum: 0, exclusiveMaximum: 1, description: 'share of prompt groups held out (0.1)' }),
    ),
    split: Type.Optional(literals(SPLITS)),
    splitSeed: Type.Optional(Type.Integer()),
    limit: Type.Optional(Type.Integer({ minimum: 1, description: 'at most this many examples' })),
  },
  { additionalProperties: false },
);

const EvalSpec = Type.Object(
  {
    at: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1 }), { description: 'evaluate after these steps' }),
    ),
    every: Type.Optional(Type.Integer({ minimum: 0, description: '...and every this many steps (0: off)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, description: 'at most this many held-out examples' })),
  },
  { additionalProperties: false },
);

/** The projections LoRA adapters can sit on (the engine's LORA_TARGET_MODULES; a trainer test keeps them equal). */
export const LORA_TARGET_MODULES = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;

/** LoRA on a frozen base (defaults: PEFT's LoraConfig, filled by the trainer's config). */
export const LoraSpec = Type.Object(
  {
    rank: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536, description: 'r (default 8)' })),
    alpha: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, description: 'lora_alpha; updates scale by alpha/r (default 8)' }),
    ),
    dropout: Type.Optional(
      Type.Number({ minimum: 0, exclusiveMaximum: 1, description: 'lora_dropout (default 0)' }),
    ),
    targetModules: Type.Optional(
      Type.Array(literals(LORA_TARGET_MODULES), {
        minItems: 1,
        uniqueItems: true,
        description: 'projections to adapt (default q_proj, v_proj)',
      }),
    ),
  },
  { additionalProperties: false },
);

/** What `mpo train --config FILE` accepts (JSON or YAML). */
export const TrainConfigSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ maxLength: 1024, description: 'schemas/train-config.schema.json, for editors' }),
    ),
    name: Type.Optional(Type.String()),
    model: Type.Union(
      [
        Type.String({ minLength: 1 }),
        Type.Object(
          { init: Type.Record(Type.String(), Type.Unknown()), seed: Type.Optional(Type.Integer()) },
          { additionalProperties: false },
        ),
      ],
      { description: 'a model directory, a builtin id, or {"init": {...config}, "seed": n}' },
    ),
    tokenizer: Type.Optional(Type.String({ description: 'a path or "byte"' })),
    template: Type.Optional(literals(TEMPLATES)),
    data: DataSpec,
    method: Type.Optional(
      Type.String({ description: 'objective: mpo, sft, dpo, ipo, rdpo, cpo, kto, orpo, simpo' }),
    ),
    hyperparameters: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    training: Type.Optional(TrainingFields),
    cutoff: Type.Optional(CutoffField),
    output: Type.String({ minLength: 1, description: 'the output directory' }),
    referenceCache: Type.Optional(Type.String({ description: 'a path' })),
    threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    device: Type.Optional(Type.String({ pattern: '^(cpu|cuda:\\d+)$', description: '"cpu" or "cuda:N"' })),
    dtype: Type.Optional(DtypeField),
    activationCheckpointing: Type.Optional(ActivationCheckpointingField),
    lossScaling: Type.Optional(
      Type.Union([Type.Boolean(), LossScalingObject], {
        description:
          'true, false or {"initScale", "growthFactor", "backoffFactor", "growthInterval"}; default: on for float16 only',
      }),
    ),
    eval: Type.Optional(EvalSpec),
    preset: Type.Optional(PresetField),
    lora: Type.Optional(LoraSpec),
  },
  { additionalProperties: false, title: 'TrainConfig' },
);
export type TrainConfigInput = Static<typeof TrainConfigSchema>;
