// The contract between a worker and its evaluation child process. The worker
// runs `mpo eval --config FILE --json --save-responses FILE`; the child prints
// one JSON object per line on stdout (progress and generations go to stderr):
//
//   {"type":"result","benchmark":"multijail","language":"zh","metric":"asr","value":0.25,"n":100}
//                                                           one per benchmark × language × metric
//   {"type":"done","results":12}                            once, after the last result
//   {"type":"error","message":"…"}                          before a non-zero exit
//
// Results become Evaluation rows only once the child exits 0, so a line need
// not be on disk before it is sent (unlike the trainer's, whose metrics are
// stored as they arrive: trainer-protocol.ts). Lines of any other type are
// ignored, so the CLI may add messages without breaking an older worker.

/** One figure of an evaluation: `value` over `n` prompts (or pairs). */
export interface EvalResultLine {
  benchmark: string;
  language: string;
  metric: string;
  value: number;
  n: number;
}

export type EvalMessage =
  | ({ type: 'result' } & EvalResultLine)
  | { type: 'done'; results: number }
  | { type: 'error'; message: string };

/** What one stdout line of `mpo eval --json` holds for the worker. */
export type EvalLine =
  | { kind: 'result'; result: EvalResultLine }
  | { kind: 'error'; message: string }
  | { kind: 'other' }
  | { kind: 'bad'; reason: string };

const nonEmpty = (v: unknown) => typeof v === 'string' && v.length > 0;

/** Every problem of a `result` line, worded for the worker's log. */
function resultProblems(v: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (!nonEmpty(v.benchmark)) problems.push('benchmark must be a non-empty string');
  if (!nonEmpty(v.language)) problems.push('language must be a non-empty string');
  if (!nonEmpty(v.metric)) problems.push('metric must be a non-empty string');
  if (typeof v.value !== 'number' || !Number.isFinite(v.value))
    problems.push('value must be a finite number');
  if (!Number.isInteger(v.n) || (v.n as number) < 0) problems.push('n must be a non-negative integer');
  return problems;
}

/**
 * Parses one stdout line. Blank lines give null; `done` and unknown types give
 * `other`; a malformed result gives `bad` with every problem (the worker logs it
 * and goes on: one garbled line must not lose the others).
 */
export function parseEvalLine(line: string): EvalLine | null {
  const text = line.trim();
  if (!text) return null;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text);
  } catch {
    return { kind: 'bad', reason: 'not JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { kind: 'bad', reason: 'not an object' };
  if (v.type === 'error') return { kind: 'error', message: String(v.message ?? 'unknown error') };
  if (v.type !== 'result') return { kind: 'other' };
  const problems = resultProblems(v);
  if (problems.length) return { kind: 'bad', reason: problems.join('; ') };
  const { benchmark, language, metric, value, n } = v as unknown as EvalResultLine;
  return { kind: 'result', result: { benchmark, language, metric, value, n } };
}
