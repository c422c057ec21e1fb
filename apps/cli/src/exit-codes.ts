/** Distinct exit codes, so scripts can tell failures apart. */
export const ExitCode = {
  ok: 0,
  failure: 1, // the command ran and failed (training diverged, a test rank died, ...)
  usage: 2, // unknown command or bad flags
  invalidInput: 3, // a file or config that does not validate
  notFound: 4, // a path, run or trial that does not exist
  unauthorized: 5, // missing or rejected token
  unavailable: 6, // API, Redis or Postgres unreachable
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that carries its exit code and a message meant for the user. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
