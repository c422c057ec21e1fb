// The exit codes are shared with the worker, which reads them from its `mpo train`
// and `mpo eval` children: one definition, in @mpo/queue (exit-codes.ts).
import { ExitCode } from '@mpo/queue';

export { ExitCode };

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
