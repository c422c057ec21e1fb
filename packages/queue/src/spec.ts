// The run spec: what `POST /runs` accepts. TypeBox gives the JSON schema served
// at /docs and the TypeScript type; validate.ts adds the checks a schema cannot
// express (roots, method hyperparameters, search-space consistency).
import { presetNames } from '@mpo/objectives';
import { type Static, type TLiteral, Type } from '@sinclair/typebox';
import { DATA_FORMATS, type DataFormat, LoraSpec, TrainingFields } from './train-config.js';

export { LORA_TARGET_MODULES, LoraSpec } from './train-config.js';

export const DEVICES = ['cpu', 'gpu'] as const;
export type Device = (typeof DEVICES)[number];
export const STRATEGIES = ['grid', 'random', 'asha'] as const;
export type Strategy = (typeof STRATEGIES)[number];
// One list of data formats, in the training config's schema.
export { DATA_FORMATS, type DataFormat };
/** Evaluation suites the eval worker knows (packages/eval). */
export const EVAL_BENCHMARKS = ['reward-gap', 'multijail', 'csrt', 'utility'] as const;
export const JUDGES = ['builtin', 'llm'] as const;
export const BUILTIN_PREFIX = 'builtin:';
export const MAX_TRIALS = 1000;
/** Training precision: fp32; bf16 mixed (fp32 master weights and optimizer state); fp16 with dynamic loss scaling (GPU). */
export const DTYPES = ['fp32', 'bf16', 'fp16'] as const;
export type TrainDtype = (typeof DTYPES)[number];
/** Most optimizer steps a trial may run (`training.steps`, `search.asha.maxSteps`). */
export const MAX_STEPS = 10_000_000;
/** Longest language tag: RFC 5646 §4.4.1 asks implementations to handle tags of at least 35 characters. */
export const MAX_LANGUAGE_TAG = 35;
/** Most entries in `search.space` and `hyperparameters`, and the longest key in either. */
export const MAX_SPACE_KEYS = 32;
export const MAX_KEY_LENGTH = 100;

const literals = <const T extends readonly string[]>(values: T, description?: string) =>
  Type.Union(values.map((v) => Type.Literal(v)) as TLiteral<T[number]>[], {
    description: description ?? `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`,
  });

export const LanguageCode = Type.String({
  pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$',
  maxLength: MAX_LANGUAGE_TAG,
  description: 'a language code such as "en", "zh" or "pt-BR"',
});

const PathOrBuiltin = (what: string, example: string) =>
  Type.String({
    minLength: 1,
    maxLength: 1024,
    description: `a builtin id ("${example}") or a path relative to the ${what} root`,
  });

export const DataItem = Type.Union(
  [
    PathOrBuiltin('data', 'builtin:mpo-llama'),
    Type.Object(
      {
        path: PathOrBuiltin('data', 'builtin:mpo-llama'),
        format: Type.Optional(literals(DATA_FORMATS)),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'a builtin id, a path under the data root, or {"path", "format"}' },
);

const Choice = Type.Object(
  { type: Type.Literal('choice'), values: Type.Array(Type.Unknown(), { minItems: 1, maxItems: MAX_TRIALS }) },
  { additionalProperties: false },
);
const Uniform = Type.Object(
  { type: Type.Literal('uniform'), min: Type.Number(), max: Type.Number() },
  { additionalProperties: false },
);
const LogUniform = Type.Object(
  {
    type: Type.Literal('loguniform'),
    min: Type.Number({ exclusiveMinimum: 0 }),
    max: Type.Number({ exclusiveMinimum: 0 }),
  },
  { additionalProperties: false },
);
const IntRange = Type.Object(
  { type: Type.Literal('int'), min: Type.Integer(), max: Type.Integer() },
  { additionalProperties: false },
);

export const SpaceEntry = Type.Union(
  [Type.Array(Type.Unknown(), { minItems: 1, maxItems: MAX_TRIALS }), Choice, Uniform, LogUniform, IntRange],
  {
    description:
      'a list of values, {"type": "choice", "values"}, {"type": "uniform" | "loguniform", "min", "max"} or {"type": "int", "min", "max"}',
  },
);

export const AshaSpec = Type.Object(
  {
    minSteps: Type.Integer({
      minimum: 1,
      maximum: MAX_STEPS,
      description: 'resource of the first rung, in optimizer steps',
    }),
    maxSteps: Type.Integer({
      minimum: 1,
      maximum: MAX_STEPS,
      description: 'resource of a trial that is never stopped',
    }),
    reductionFactor: Type.Optional(
      Type.Integer({ minimum: 2, maximum: 16, default: 3, description: 'η: a rung keeps the top 1/η' }),
    ),
  },
  { additionalProperties: false },
);

export const SearchSpec = Type.Object(
  {
    strategy: literals(STRATEGIES),
    space: Type.Record(Type.String(), SpaceEntry, {
      description:
        'hyperparameter → values. Plain names are method hyperparameters ("beta"); "training.<field>" overrides a training field ("training.learningRate").',
      maxProperties: MAX_SPACE_KEYS,
    }),
    maxTrials: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_TRIALS,
        description: 'grid: cap on the product (default: all of it); random and asha: required',
      }),
    ),
    metric: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'metric compared across trials (and at ASHA rungs)',
    }),
    mode: literals(['min', 'max'] as const),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1, default: 0 })),
    asha: Type.Optional(AshaSpec),
  },
  { additionalProperties: false },
);

export const ResourcesSpec = Type.Object(
  {
    ranksPerTrial: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 1 })),
    device: Type.Optional(literals(DEVICES)),
    /** Ranks of each trial (the same as ranksPerTrial; give either, or both equal). */
    ranks: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /**
     * Ranks on each host: a trial of `ranks` ranks spans ranks / ranksPerHost agents on different hosts,
     * gang-scheduled (apps/worker/README.md). Left out: every rank on one agent.
     */
    ranksPerHost: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  },
  { additionalProperties: false },
);

export const EvalSpec = Type.Object(
  {
    benchmarks: Type.Array(literals(EVAL_BENCHMARKS), {
      minItems: 1,
      maxItems: EVAL_BENCHMARKS.length,
      uniqueItems: true,
    }),
    languages: Type.Optional(Type.Array(LanguageCode, { minItems: 1, maxItems: 32, uniqueItems: true })),
    maxPrompts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, default: 100 })),
    judge: Type.Optional(literals(JUDGES)),
  },
  { additionalProperties: false },
);

/**
 * The spec's `training` block: the training config's own fields (train-config.ts, the trainer's names), plus
 * cutoff and precision, which the trainer's config keeps at its top level. `steps` and `microBatch` are the
 * names specs used before the two were unified: still accepted, with a warning (DEPRECATED_TRAINING_NAMES).
 */
export const TrainingSpec = Type.Object(
  {
    ...TrainingFields.properties,
    steps: Type.Optional(
      Type.Integer({ ...TrainingFields.properties.maxSteps, description: 'deprecated: use maxSteps' }),
    ),
    microBatch: Type.Optional(
      Type.Integer({
        ...TrainingFields.properties.microBatchSize,
        description: 'deprecated: use microBatchSize',
      }),
    ),
    cutoff: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000_000, default: 1024 })),
    dtype: Type.Optional(
      literals(
        DTYPES,
        'precision: "fp32" (default); "bf16" mixed (bf16 weights/activations in forward and backward, fp32 master weights, optimizer state and losses); "fp16" with dynamic loss scaling (needs resources.device "gpu")',
      ),
    ),
    activationCheckpointing: Type.Optional(
      Type.Boolean({
        description: 'recompute each decoder layer in backward instead of keeping its activations',
      }),
    ),
    lora: Type.Optional(LoraSpec),
  },
  { additionalProperties: false },
);

/** Old spec names → the training config's names. */
export const DEPRECATED_TRAINING_NAMES = { steps: 'maxSteps', microBatch: 'microBatchSize' } as const;

/** What `POST /runs` accepts. */
export const RunSpecSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ maxLength: 1024, description: 'schemas/run-spec.schema.json, for editors' }),
    ),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    model: PathOrBuiltin('model', 'builtin:tiny-multilingual'),
    data: Type.Union([DataItem, Type.Array(DataItem, { minItems: 1, maxItems: 16 })], {
      description: 'one data source or a list of them (builtin ids or paths under the data root)',
    }),
    dominantLanguage: LanguageCode,
    targetLanguages: Type.Array(LanguageCode, { minItems: 1, maxItems: 32, uniqueItems: true }),
    method: Type.String({
      maxLength: 32,
      description: 'objective: mpo, sft, dpo, ipo, rdpo, cpo, kto, orpo, r-dpo, simpo',
    }),
    preset: Type.Optional(
      literals(
        presetNames,
        `MPO's values for a backbone from the paper (Table 8, Appendix G: learning rate, β, 2 epochs, batch 8, cutoff 2048, 10% warm-up), one of ${presetNames.join(', ')}; method must be "mpo", fields the spec states win`,
      ),
    ),
    hyperparameters: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description: "the method's fixed hyperparameters; unspecified ones take the method's defaults",
        maxProperties: MAX_SPACE_KEYS,
      }),
    ),
    search: SearchSpec,
    resources: Type.Optional(ResourcesSpec),
    eval: EvalSpec,
    training: TrainingSpec,
  },
  { additionalProperties: false, title: 'RunSpec' },
);
export type RunSpecInput = Static<typeof RunSpecSchema>;
export type SpaceEntryInput = Static<typeof SpaceEntry>;

// ---- the normalized spec: every default filled, paths made root-relative ----

export type ModelRef = { kind: 'builtin'; id: string } | { kind: 'path'; path: string };
export type DataRef = ({ kind: 'builtin'; id: string } | { kind: 'path'; path: string }) & {
  format?: DataFormat;
};

export type SpaceDistribution =
  | { type: 'choice'; values: unknown[] }
  | { type: 'uniform'; min: number; max: number }
  | { type: 'loguniform'; min: number; max: number }
  | { type: 'int'; min: number; max: number };

export interface TrainingParams {
  steps?: number;
  epochs?: number;
  batchSize: number;
  microBatch: number;
  cutoff: number;
  checkpointEvery: number;
  seed: number;
  learningRate: number;
  warmupRatio: number;
  /** Present when the spec gave it (absent: fp32, no checkpointing). */
  dtype?: TrainDtype;
  activationCheckpointing?: boolean;
  /** LoRA adapters instead of full fine-tuning (as given; the trainer fills PEFT's defaults). */
  lora?: Static<typeof LoraSpec>;
  /** Optimizer and checkpoint fields of the training config, present when the spec gave them. */
  weightDecay?: number;
  maxGradNorm?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  adamEps?: number;
  keepCheckpoints?: number;
  zeroStage?: number;
}

export interface AshaParams {
  minSteps: number;
  maxSteps: number;
  reductionFactor: number;
}

/** A valid spec with defaults filled: what is stored in Run.spec and planned into jobs. */
export interface RunSpec {
  name: string;
  model: ModelRef;
  data: DataRef[];
  dominantLanguage: string;
  targetLanguages: string[];
  method: string;
  hyperparameters: Record<string, unknown>;
  search: {
    strategy: Strategy;
    space: Record<string, SpaceDistribution>;
    maxTrials: number;
    metric: string;
    mode: 'min' | 'max';
    seed: number;
    asha?: AshaParams;
  };
  resources: { ranksPerTrial: number; device: Device; ranksPerHost?: number };
  eval: { benchmarks: string[]; languages: string[]; maxPrompts: number; judge: string };
  training: TrainingParams;
  /** The backbone preset whose values filled what the spec left out. */
  preset?: string;
}

/** Fields of `training` a search space may vary ("training.<field>"). */
export const TUNABLE_TRAINING_FIELDS = [
  'learningRate',
  'warmupRatio',
  'batchSize',
  'microBatchSize',
  'microBatch',
  'seed',
  'epochs',
  'cutoff',
] as const;
