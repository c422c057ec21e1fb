import { readFileSync } from 'node:fs';
import { CliError, ExitCode } from './exit-codes.js';

/** Reads a JSON file; a missing file or a syntax error becomes a clear CLI error with its location. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      `${what} ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      code === 'ENOENT' ? ExitCode.notFound : ExitCode.invalidInput,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const pos = syntaxErrorOffset(text);
    const before = text.slice(0, pos).split('\n');
    const where = ` at line ${before.length}, column ${before.at(-1)!.length + 1}`;
    throw new CliError(
      `${what} ${path}: invalid JSON${where}: ${(err as Error).message}`,
      ExitCode.invalidInput,
    );
  }
}

/**
 * Offset of the first character that makes `text` invalid JSON. Node 20's
 * JSON.parse does not always report a position, but a prefix that is merely
 * cut short fails at its own end, so the longest such prefix is found by
 * binary search.
 */
export function syntaxErrorOffset(text: string): number {
  const truncatedOnly = (n: number) => {
    try {
      JSON.parse(text.slice(0, n));
      return true;
    } catch (e) {
      const msg = (e as Error).message;
      // Cut-short prefixes fail at their very end: either this message, or an
      // "... at position N" with N the prefix length.
      const at = /at position (\d+)/.exec(msg);
      return /end of JSON input/.test(msg) || (at !== null && Number(at[1]) >= n);
    }
  };
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (truncatedOnly(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
