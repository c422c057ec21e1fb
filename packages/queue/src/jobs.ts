// Job payloads (BullMQ `job.data`), results (`job.returnvalue`) and progress
// (`job.updateProgress`), with runtime checks: a worker built from another
// commit than the API must fail loudly on a payload it does not understand,
// not train the wrong thing. Every payload carries `v` (the contract version).
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ProblemsError } from './problems.js';
import { schemaProblems } from './schema-problems.js';
import { DATA_FORMATS, DEVICES, DTYPES, LoraSpec } from './spec.js';
import { TrainingFields } from './train-config.js';

export const CONTRACT_VERSION = 1;

const Uuid = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
});
const Device = Type.Union(DEVICES.map((d) => Type.Literal(d)));
const Mode = Type.Union([Type.Literal('min'), Type.Literal('max')]);

/**
 * Device slots a job needs: `count` slots of `device` (one per rank), on one agent, or with
 * `ranksPerHost` (< count, dividing it) on count / ranksPerHost agents of different hosts (a gang:
 * gang.ts).
 */
export const SlotRequirementSchema = Type.Object(
  {
    device: Device,
    count: Type.Integer({ minimum: 1, maximum: 64 }),
    ranksPerHost: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  },
  { additionalProperties: false },
);
export type SlotRequirement = Static<typeof SlotRequirementSchema>;

const ModelRefSchema = Type.Union([
  Type.Object({ kind: Type.Literal('builtin'), id: Type.String() }, { additionalProperties: false }),
  Type.Object(
    { kind: Type.Literal('path'), path: Type.String({ description: 'relative to MPO_MODEL_ROOT' }) },
    { additionalProperties: false },
  ),
]);
const DataRefSchema = Type.Union([
  Type.Object(
    {
      kind: Type.Literal('builtin'),
      id: Type.String(),
      format: Type.Optional(Type.Union(DATA_FORMATS.map((f) => Type.Literal(f)))),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal('path'),
      path: Type.String({ description: 'relative to MPO_DATA_ROOT' }),
      format: Type.Optional(Type.Union(DATA_FORMATS.map((f) => Type.Literal(f)))),
    },
    { additionalProperties: false },
  ),
]);

const TrainingSchema = Type.Object(
  {
    steps: Type.Optional(Type.Integer({ minimum: 1 })),
    epochs: Type.Optional(Type.Integer({ minimum: 1 })),
    batchSize: Type.Integer({ minimum: 1 }),
    microBatch: Type.Integer({ minimum: 1 }),
    cutoff: Type.Integer({ minimum: 2 }),
    checkpointEvery: Type.Integer({ minimum: 0 }),
    seed: Type.Integer({ minimum: 0 }),
    learningRate: Type.Number({ exclusiveMinimum: 0 }),
    warmupRatio: Type.Number({ minimum: 0, maximum: 1 }),
    dtype: Type.Optional(Type.Union(DTYPES.map((d) => Type.Literal(d)))),
    activationCheckpointing: Type.Optional(Type.Boolean()),
    lora: Type.Optional(LoraSpec),
    // The training config's optimizer fields a spec gave (bounds: train-config.ts TrainingFields).
    weightDecay: TrainingFields.properties.weightDecay,
    maxGradNorm: TrainingFields.properties.maxGradNorm,
    adamBeta1: TrainingFields.properties.adamBeta1,
    adamBeta2: TrainingFields.properties.adamBeta2,
    adamEps: TrainingFields.properties.adamEps,
    keepCheckpoints: TrainingFields.properties.keepCheckpoints,
    zeroStage: TrainingFields.properties.zeroStage,
  },
  { additionalProperties: false },
);

/** ASHA settings a train job needs to take its own rung decisions (rungs.ts, asha.ts). */
export const AshaJobSchema = Type.Object(
  {
    rungs: Type.Array(Type.Integer({ minimum: 1 }), {
      description: 'decision rungs in steps, ascending; rung index k is at rungs[k]',
    }),
    maxSteps: Type.Integer({ minimum: 1 }),
    reductionFactor: Type.Integer({ minimum: 2 }),
    metric: Type.String(),
    mode: Mode,
  },
  { additionalProperties: false },
);
export type AshaJob = Static<typeof AshaJobSchema>;

/** The fields that name a trial's job, the same in train and eval jobs. */
const trialIdentity = {
  v: Type.Literal(CONTRACT_VERSION),
  runId: Uuid,
  trialId: Uuid,
  trialIndex: Type.Integer({ minimum: 0 }),
};

/** The run's model (the base, for eval jobs), its data and its languages. */
const modelAndData = {
  model: ModelRefSchema,
  data: Type.Array(DataRefSchema, { minItems: 1 }),
  dominantLanguage: Type.String(),
  targetLanguages: Type.Array(Type.String()),
};

/** `train` jobs (queues train-cpu / train-gpu): everything needed to train one trial. */
export const TrainJobDataSchema = Type.Object(
  {
    ...trialIdentity,
    method: Type.String(),
    hyperparameters: Type.Record(Type.String(), Type.Unknown()),
    /** The sampled point alone (for logs and display). */
    params: Type.Record(Type.String(), Type.Unknown()),
    ...modelAndData,
    training: TrainingSchema,
    /** Steps if never stopped; null when set by epochs. */
    totalSteps: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    slots: SlotRequirementSchema,
    /** The metric the sweep compares (best metric of the trial). */
    objective: Type.Object({ metric: Type.String(), mode: Mode }, { additionalProperties: false }),
    asha: Type.Optional(AshaJobSchema),
  },
  { additionalProperties: false, $id: 'TrainJobData' },
);
export type TrainJobData = Static<typeof TrainJobDataSchema>;

/** `eval` jobs (queues eval-cpu / eval-gpu): evaluate a trial's final checkpoint. */
export const EvalJobDataSchema = Type.Object(
  {
    ...trialIdentity,
    /** The base model, for before/after comparisons. */
    ...modelAndData,
    benchmarks: Type.Array(Type.String(), { minItems: 1 }),
    languages: Type.Array(Type.String(), { minItems: 1 }),
    maxPrompts: Type.Integer({ minimum: 1 }),
    judge: Type.String(),
    cutoff: Type.Integer({ minimum: 2 }),
    slots: SlotRequirementSchema,
  },
  { additionalProperties: false, $id: 'EvalJobData' },
);
export type EvalJobData = Static<typeof EvalJobDataSchema>;

/** Contract version of `TrialJobRef` payloads (train and eval jobs published since issue 16). */
export const TRIAL_REF_VERSION = 2;

/**
 * What a train or eval job carries since issue 16: the trial's own fields only. The run-level fields
 * (model, data, languages, eval settings, ASHA) are stored once, in the run's spec (Postgres), and the
 * worker rebuilds the full `TrainJobData` / `EvalJobData` from it (flow.ts `trainJobFromRef`,
 * `evalJobFromRef`), so a run's jobs no longer repeat its lists once per trial. `slots` stays in the
 * job: an agent fits it to its free slots before it reads anything else.
 */
export const TrialJobRefSchema = Type.Object(
  {
    v: Type.Literal(TRIAL_REF_VERSION),
    runId: Uuid,
    trialId: Uuid,
    trialIndex: Type.Integer({ minimum: 0 }),
    /** The trial's point: search-space key → value. */
    params: Type.Record(Type.String(), Type.Unknown()),
    slots: SlotRequirementSchema,
  },
  { additionalProperties: false, $id: 'TrialJobRef' },
);
export type TrialJobRef = Static<typeof TrialJobRefSchema>;

/** The run-level parent (queue `sweep`): runs once every trial's eval has finished or failed. */
export const SweepJobDataSchema = Type.Object(
  {
    v: Type.Literal(CONTRACT_VERSION),
    runId: Uuid,
    trialCount: Type.Integer({ minimum: 1 }),
    strategy: Type.String(),
    objective: Type.Object({ metric: Type.String(), mode: Mode }, { additionalProperties: false }),
  },
  { additionalProperties: false, $id: 'SweepJobData' },
);
export type SweepJobData = Static<typeof SweepJobDataSchema>;

/** `job.updateProgress(...)` of train jobs. */
export const TrainProgressSchema = Type.Object({
  step: Type.Integer({ minimum: 0 }),
  totalSteps: Type.Union([Type.Integer(), Type.Null()]),
  loss: Type.Union([Type.Number(), Type.Null()]),
  /** Epoch ms when the step finished. */
  at: Type.Number(),
});
export type TrainProgress = Static<typeof TrainProgressSchema>;

/**
 * What a train job returns. Cancelled and ASHA-stopped trials complete their
 * job normally (they are outcomes, not failures, and must not be retried).
 */
export const TrainJobResultSchema = Type.Object({
  status: Type.Union([Type.Literal('SUCCEEDED'), Type.Literal('STOPPED'), Type.Literal('CANCELLED')]),
  step: Type.Integer({ minimum: 0 }),
  checkpoint: Type.Union([
    Type.Object({
      step: Type.Integer(),
      path: Type.String(),
      bytes: Type.Number(),
      sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    }),
    Type.Null(),
  ]),
  bestMetric: Type.Union([Type.Number(), Type.Null()]),
  stoppedAtRung: Type.Optional(Type.Integer({ minimum: 0 })),
  reason: Type.Optional(Type.String()),
});
export type TrainJobResult = Static<typeof TrainJobResultSchema>;

export const EvalJobResultSchema = Type.Object({
  status: Type.Union([Type.Literal('EVALUATED'), Type.Literal('SKIPPED')]),
  /** Evaluation rows written to Postgres. */
  evaluations: Type.Integer({ minimum: 0 }),
  reason: Type.Optional(Type.String()),
});
export type EvalJobResult = Static<typeof EvalJobResultSchema>;

function parser<S extends TSchema>(schema: S, what: string) {
  const check = TypeCompiler.Compile(schema);
  return (data: unknown): Static<S> => {
    if (check.Check(data)) return data;
    throw new ProblemsError(schemaProblems(schema, data), what);
  };
}

/** Runtime checks for the worker: throw ProblemsError (path and reason of every problem). */
export const parseTrainJobData = parser(TrainJobDataSchema, 'train job data');
export const parseEvalJobData = parser(EvalJobDataSchema, 'eval job data');
export const parseSweepJobData = parser(SweepJobDataSchema, 'sweep job data');
export const parseTrialJobRef = parser(TrialJobRefSchema, 'trial job reference');

const isRef = (data: unknown) => (data as { v?: unknown } | null)?.v === TRIAL_REF_VERSION;
/**
 * A train job's payload as published: a `TrialJobRef`, or (jobs queued before issue 16, and jobs a
 * tool adds directly) the full `TrainJobData`.
 */
export const parseTrainJobPayload = (data: unknown): TrialJobRef | TrainJobData =>
  isRef(data) ? parseTrialJobRef(data) : parseTrainJobData(data);
export const parseEvalJobPayload = (data: unknown): TrialJobRef | EvalJobData =>
  isRef(data) ? parseTrialJobRef(data) : parseEvalJobData(data);
export const parseTrainJobResult = parser(TrainJobResultSchema, 'train job result');
export const parseEvalJobResult = parser(EvalJobResultSchema, 'eval job result');
export const parseTrainProgress = parser(TrainProgressSchema, 'train progress');
