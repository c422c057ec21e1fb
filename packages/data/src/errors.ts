/** A data problem located in a file: `file:line: message` (line is 1-based, when known). */
export class DataError extends Error {
  override name = 'DataError';
  constructor(
    readonly reason: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(file ? `${file}${line !== undefined ? `:${line}` : ''}: ${reason}` : reason);
  }
}

/** A row left out, with why; its paired row (source/target) is always left out with it. */
export interface Dropped {
  id: string;
  reason: string;
}
