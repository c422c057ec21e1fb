// The exit codes of the `mpo` CLI, shared by the CLI (which returns them) and the
// worker (which reads them from its train and eval children): a parent must tell
// "the input is wrong, retrying cannot help" from "this attempt failed".

/** Distinct exit codes, so scripts and the worker can tell failures apart. */
export const ExitCode = {
  ok: 0,
  failure: 1, // the command ran and failed (training diverged, a test rank died, ...)
  usage: 2, // unknown command or bad flags
  invalidInput: 3, // a file or config that does not validate
  notFound: 4, // a path, run or trial that does not exist
  unauthorized: 5, // missing or rejected token
  unavailable: 6, // API, Redis or Postgres unreachable
  interrupted: 130, // stopped by SIGTERM/SIGINT after a checkpoint (train: a "done" line with stopped: true)
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const INVALID_INPUT: ReadonlySet<number> = new Set([
  ExitCode.usage,
  ExitCode.invalidInput,
  ExitCode.notFound,
]);

/**
 * True when a child's exit code says its input is wrong (bad flags, a config
 * that does not validate, a missing path): the same job would fail the same
 * way, so the worker fails it for good instead of retrying.
 */
export function isInvalidInputExit(code: number | null): boolean {
  return code !== null && INVALID_INPUT.has(code);
}
