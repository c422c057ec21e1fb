// The contract between a worker and its training child process. The worker
// runs `mpo train --config FILE --json`; the child prints one JSON object per
// line on stdout (anything else goes to stderr):
//
//   {"type":"start","totalSteps":300,"resumedFrom":120}            once, after loading
//   {"type":"step","step":121,"totalSteps":300,"loss":0.41,"metrics":{"lr":1e-5,"rg":{"zh":0.3,"ko":0.1}}}
//   {"type":"eval","step":300,"metrics":{"heldout/reward_gap":{"zh":0.52}}}   held-out metrics (ASHA rungs)
//   {"type":"checkpoint","step":300,"path":"/…/step-300","bytes":123456,"sha256":"…64 hex…"}
//   {"type":"done","step":300,"totalSteps":300,"stopped":false,"checkpoint":{…}|null}
//   {"type":"error","message":"…"}                                  before a non-zero exit
//
// `metrics` values are a number, or {language: number} for per-language
// metrics. Steps are 1-based optimizer steps. SIGTERM asks the child to finish
// its current step, checkpoint and exit with a `done` whose `stopped` is true
// (exit code ExitCode.interrupted, exit-codes.ts).
//
// `mpo train` (apps/cli) builds every line as a TrainerMessage, so the CLI and
// the worker cannot drift apart. A `step` also carries `epoch`, `seconds` and
// `timing` and a `done` carries `weightsHash`, `finalDir` and `resumedFrom`:
// optional, for people and scripts reading the CLI's output; the worker needs
// none of them.
import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { schemaProblems } from './schema-problems.js';

const Step = Type.Integer({ minimum: 0 });
const MetricValue = Type.Union([
  Type.Number(),
  Type.Null(),
  Type.Record(Type.String(), Type.Union([Type.Number(), Type.Null()])),
]);
const Metrics = Type.Record(Type.String(), MetricValue);
const CheckpointFields = {
  step: Step,
  path: Type.String({ minLength: 1 }),
  bytes: Type.Number({ minimum: 0 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
};

export const TrainerStartSchema = Type.Object({
  type: Type.Literal('start'),
  totalSteps: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  resumedFrom: Type.Union([Step, Type.Null()]),
});
export const TrainerStepSchema = Type.Object({
  type: Type.Literal('step'),
  step: Step,
  totalSteps: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  // JSON has no NaN: a diverged loss arrives as null.
  loss: Type.Union([Type.Number(), Type.Null()]),
  metrics: Metrics,
  epoch: Type.Optional(Type.Number()),
  seconds: Type.Optional(Type.Number()),
  /** Seconds per phase of the step (forward, backward, optimizer, ...). */
  timing: Type.Optional(Type.Record(Type.String(), Type.Number())),
});
export const TrainerEvalSchema = Type.Object({ type: Type.Literal('eval'), step: Step, metrics: Metrics });
export const TrainerCheckpointSchema = Type.Object({ type: Type.Literal('checkpoint'), ...CheckpointFields });
export const TrainerDoneSchema = Type.Object({
  type: Type.Literal('done'),
  step: Step,
  totalSteps: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  stopped: Type.Boolean(),
  checkpoint: Type.Union([Type.Object(CheckpointFields), Type.Null()]),
  weightsHash: Type.Optional(Type.String()),
  finalDir: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  resumedFrom: Type.Optional(Type.Union([Step, Type.Null()])),
});
export const TrainerErrorSchema = Type.Object({ type: Type.Literal('error'), message: Type.String() });

export const TrainerMessageSchema = Type.Union([
  TrainerStartSchema,
  TrainerStepSchema,
  TrainerEvalSchema,
  TrainerCheckpointSchema,
  TrainerDoneSchema,
  TrainerErrorSchema,
]);
export type TrainerMessage = Static<typeof TrainerMessageSchema>;
export type TrainerMetrics = Static<typeof Metrics>;
export type TrainerStep = Static<typeof TrainerStepSchema>;
export type TrainerEval = Static<typeof TrainerEvalSchema>;
export type TrainerCheckpoint = Static<typeof TrainerCheckpointSchema>;
export type TrainerDone = Static<typeof TrainerDoneSchema>;

const checkMessage = TypeCompiler.Compile(TrainerMessageSchema);

export type ParsedLine = { ok: true; message: TrainerMessage } | { ok: false; line: string; reason: string };

/**
 * Parses one line. Blank lines give null; anything that is not a well-formed
 * message gives `ok: false` with the reason (the worker logs it and goes on:
 * one garbled line must not kill a trial).
 */
export function parseTrainerLine(line: string): ParsedLine | null {
  const text = line.trim();
  if (!text) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, line: text, reason: 'not JSON' };
  }
  if (checkMessage.Check(value)) return { ok: true, message: value };
  const problems = schemaProblems(TrainerMessageSchema, value);
  return {
    ok: false,
    line: text,
    reason: problems.map((p) => `${p.path || '(root)'}: ${p.reason}`).join('; ') || 'unknown message',
  };
}

/** Splits a byte stream into lines across chunk boundaries and parses each. */
export class TrainerOutputParser {
  private buffer = '';

  push(chunk: string | Buffer): ParsedLine[] {
    this.buffer += chunk.toString();
    const lines = this.buffer.split('\n');
    this.buffer = lines.pop() ?? '';
    return lines.map(parseTrainerLine).filter((p): p is ParsedLine => p !== null);
  }

  /** The last line, when the stream ended without a newline. */
  end(): ParsedLine[] {
    const rest = this.buffer;
    this.buffer = '';
    const p = parseTrainerLine(rest);
    return p ? [p] : [];
  }
}

/** One metric row as Postgres stores it (packages/db MetricInput without the trial). */
export interface MetricRow {
  step: number;
  name: string;
  language: string | null;
  value: number;
}

/**
 * Flattens a step (loss plus its metrics) or an eval message into metric rows:
 * `{"rg": {"zh": 0.3}}` → name "rg", language "zh". Null values (NaN or
 * infinite in the trainer; JSON cannot carry them) are left out: Postgres keeps
 * finite numbers only, and a diverged loss still shows in the job's progress.
 */
export function metricRows(msg: TrainerStep | TrainerEval): MetricRow[] {
  const rows: MetricRow[] = [];
  const add = (name: string, language: string | null, value: number | null) => {
    if (value !== null) rows.push({ step: msg.step, name, language, value });
  };
  if (msg.type === 'step') add('loss', null, msg.loss);
  for (const [name, v] of Object.entries(msg.metrics)) {
    // The step's `loss` (summed over ranks) is the row; an objective metric of
    // the same name is one rank's share under data parallelism: not a second row.
    if (msg.type === 'step' && name === 'loss') continue;
    if (v === null || typeof v === 'number') add(name, null, v);
    else for (const [language, x] of Object.entries(v)) add(name, language, x);
  }
  return rows;
}

/**
 * The value of `metric` in a message, for ASHA rungs and a trial's best metric:
 * a plain number, or the mean over languages of a per-language metric
 * (`"heldout/reward_gap:zh"` selects one language). Undefined when absent.
 */
export function metricValue(metrics: TrainerMetrics, metric: string): number | undefined {
  const [name, lang] = metric.includes(':')
    ? (metric.split(':', 2) as [string, string])
    : [metric, undefined];
  const v = metrics[name];
  if (v === undefined) return undefined;
  if (v === null) return Number.NaN;
  if (typeof v === 'number') return lang === undefined ? v : undefined;
  if (lang !== undefined) return v[lang] === undefined ? undefined : (v[lang] ?? Number.NaN);
  const xs = Object.values(v).map((x) => x ?? Number.NaN);
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
}
