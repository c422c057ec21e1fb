import { MAX_POINTS } from '@mpo/db';
import { RUN_STATUSES, RunSpecSchema, TRIAL_STATUSES } from '@mpo/queue';
import { Type } from '@sinclair/typebox';
import {
  DateTime,
  errorResponses,
  literals,
  MAX_INT4,
  MAX_OFFSET,
  NO_NUL,
  NullableDateTime,
  ProblemResponse,
  Uuid,
} from '../common.js';

const RunStatus = literals(RUN_STATUSES);
const TrialStatus = literals(TRIAL_STATUSES);
const NullableNumber = Type.Union([Type.Number(), Type.Null()]);
const NullableInt = Type.Union([Type.Integer(), Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

export const RunIdParams = Type.Object({ id: Type.String({ maxLength: 64, description: 'run id (uuid)' }) });

export const CreatedRun = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    status: RunStatus,
    trialCount: Type.Integer(),
    queued: Type.Boolean({
      description:
        'true when the run’s jobs are in Redis; false when Redis failed right after the commit (the outbox publishes them as soon as it is back)',
    }),
    createdAt: DateTime,
    warnings: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'LLaMA-Factory bodies: every field ignored, with why ("deepspeed: ..."); deprecated names the spec used ("training.steps: deprecated, use training.maxSteps")',
      }),
    ),
  },
  { title: 'CreatedRun' },
);

export const createRunSchema = {
  tags: ['runs'],
  summary: 'Launch a sweep',
  description:
    'Validates the spec (400 lists every problem), plans the trials (grid, random or ASHA), and writes the run, its first trial and its job flow in one transaction; the flow is then published to the queues. The other trials are created by the agents a few ahead of those running (their points are a function of the spec). The same Idempotency-Key (per token) returns the same run.',
  headers: Type.Object({
    'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  }),
  body: RunSpecSchema,
  // YAML bodies too (routes/runs/spec-text.ts), including LLaMA-Factory training YAMLs as they are.
  consumes: ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml'],
  response: {
    201: CreatedRun,
    200: CreatedRun,
    413: ProblemResponse,
    422: ProblemResponse,
    ...errorResponses,
  },
};

const RunSummary = Type.Object({
  id: Uuid,
  name: Type.String(),
  status: RunStatus,
  trialCount: Type.Integer(),
  createdAt: DateTime,
  startedAt: NullableDateTime,
  finishedAt: NullableDateTime,
  cancelRequestedAt: NullableDateTime,
});

export const listRunsSchema = {
  tags: ['runs'],
  summary: 'List runs (newest first)',
  querystring: Type.Object(
    {
      status: Type.Optional(RunStatus),
      limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
      offset: Type.Integer({ minimum: 0, maximum: MAX_OFFSET, default: 0 }),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      total: Type.Integer(),
      limit: Type.Integer(),
      offset: Type.Integer(),
      items: Type.Array(RunSummary),
    }),
    ...errorResponses,
  },
};

export const Trial = Type.Object({
  id: Uuid,
  index: Type.Integer(),
  status: TrialStatus,
  hyperparameters: Type.Record(Type.String(), Type.Unknown()),
  attempt: Type.Integer(),
  currentStep: Type.Integer(),
  totalSteps: NullableInt,
  bestMetric: NullableNumber,
  stopReason: NullableString,
  stoppedAtRung: NullableInt,
  error: NullableString,
  startedAt: NullableDateTime,
  finishedAt: NullableDateTime,
});

export const getRunSchema = {
  tags: ['runs'],
  summary: 'A run with its trials',
  params: RunIdParams,
  response: {
    200: Type.Object({
      ...RunSummary.properties,
      spec: Type.Record(Type.String(), Type.Unknown(), { description: 'the normalized spec' }),
      objective: Type.Object({ metric: Type.String(), mode: Type.String() }),
      best: Type.Union([
        Type.Object({ trialId: Uuid, trialIndex: Type.Integer(), value: Type.Number() }),
        Type.Null(),
      ]),
      notCreated: Type.Integer({
        description:
          'trials of the plan (trialCount) not created yet: agents create them a few ahead of the ones running; `trials` lists the created ones',
      }),
      rungs: Type.Array(Type.Integer(), {
        description:
          'ASHA decision rungs in steps (the rungs the train jobs were given: minSteps·η^k below maxSteps); empty when the search is not ASHA',
      }),
      trials: Type.Array(Trial),
    }),
    ...errorResponses,
  },
};

export const metricsQuery = Type.Object(
  {
    trial: Type.Optional(Type.String({ maxLength: 36, description: 'trial id, or trial index' })),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: NO_NUL })),
    lang: Type.Optional(Type.String({ minLength: 1, maxLength: 32, pattern: NO_NUL })),
    since: Type.Optional(
      // since + 1 is computed in int4.
      Type.Integer({ minimum: -1, maximum: MAX_INT4 - 1, description: 'only steps greater than this' }),
    ),
    points: Type.Integer({
      minimum: 1,
      maximum: MAX_POINTS,
      default: 500,
      description: 'at most this many points per series',
    }),
  },
  { additionalProperties: false },
);

export const getMetricsSchema = {
  tags: ['runs'],
  summary: 'Metric series of a run, downsampled for charts',
  description:
    'Every matching series (one per trial, metric name and language) with at most `points` points each. When the requested range (since, last step] spans at most `points` steps, every row comes back; otherwise the series is cut into buckets of `stride` steps (floor(step / stride), stride a power of two) and each bucket is represented by its LAST row (a real step and value, not an average). Answered from a per-series summary kept by Postgres, so the cost does not grow with the series length. Poll with `since` = the last step you have.',
  params: RunIdParams,
  querystring: metricsQuery,
  response: {
    200: Type.Object({
      runId: Uuid,
      points: Type.Integer(),
      aggregation: Type.Literal('last'),
      series: Type.Array(
        Type.Object({
          trialId: Uuid,
          trialIndex: Type.Integer(),
          name: Type.String(),
          language: NullableString,
          firstStep: Type.Integer(),
          lastStep: Type.Integer(),
          count: Type.Integer({ description: 'rows stored for the series' }),
          stride: Type.Integer({
            description: 'bucket width in steps of the points returned (1: every row)',
          }),
          steps: Type.Array(Type.Integer()),
          values: Type.Array(Type.Number()),
        }),
      ),
    }),
    ...errorResponses,
  },
};

export const cancelRunSchema = {
  tags: ['runs'],
  summary: 'Cancel a run',
  description:
    'Trials not yet started are CANCELLED at once; running trials stop at their next step (their checkpoints are kept) when their worker sees the run’s cancel key. Idempotent.',
  params: RunIdParams,
  response: {
    202: Type.Object({
      id: Uuid,
      status: RunStatus,
      cancelRequestedAt: DateTime,
      cancelled: Type.Integer({ description: 'trials cancelled before they started' }),
      stopping: Type.Integer({ description: 'running trials asked to stop' }),
    }),
    409: ProblemResponse,
    ...errorResponses,
  },
};

export const getEvaluationsSchema = {
  tags: ['runs'],
  summary: "Evaluation results of a run's trials",
  description:
    'One row per (trial, checkpoint, benchmark, language, metric): reward gap per language, MultiJail/CSRT attack success rate per language (and "avg"), utility perplexity (en, zh).',
  params: RunIdParams,
  querystring: Type.Object(
    { benchmark: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: NO_NUL })) },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      runId: Uuid,
      evaluations: Type.Array(
        Type.Object({
          trialId: Uuid,
          trialIndex: Type.Integer(),
          checkpointId: Type.Union([Uuid, Type.Null()]),
          benchmark: Type.String(),
          language: Type.String(),
          metric: Type.String(),
          value: Type.Number(),
          n: Type.Integer(),
          createdAt: Type.String({ format: 'date-time' }),
        }),
      ),
    }),
    ...errorResponses,
  },
};

export const getGenerationsSchema = {
  tags: ['runs'],
  summary: "Generations behind a run's attack-success rates",
  description:
    "Each MultiJail/CSRT prompt, the trial's response and the judge's verdict (safe | unsafe | irrelevant; the last two count as attack success), ordered by benchmark, language and prompt id. Filter by trial, benchmark, language, verdict or attackSuccess; page with limit and the nextCursor of the previous page.",
  params: RunIdParams,
  querystring: Type.Object(
    {
      trialId: Type.Optional(Uuid),
      benchmark: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      language: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
      verdict: Type.Optional(literals(['safe', 'unsafe', 'irrelevant'])),
      attackSuccess: Type.Optional(Type.Boolean()),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
      cursor: Type.Optional(Uuid),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      runId: Uuid,
      total: Type.Integer({ description: 'rows matching the filter, over every page' }),
      nextCursor: Type.Union([Uuid, Type.Null()]),
      generations: Type.Array(
        Type.Object({
          id: Uuid,
          trialId: Uuid,
          trialIndex: Type.Integer(),
          checkpointId: Type.Union([Uuid, Type.Null()]),
          evaluationId: Type.Union([Uuid, Type.Null()]),
          benchmark: Type.String(),
          language: Type.String(),
          promptId: Type.String(),
          prompt: Type.String(),
          response: Type.String(),
          verdict: literals(['safe', 'unsafe', 'irrelevant']),
          reason: NullableString,
          judge: Type.String(),
          createdAt: DateTime,
        }),
      ),
    }),
    ...errorResponses,
  },
};
