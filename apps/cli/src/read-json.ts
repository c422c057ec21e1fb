import { readFileSync } from 'node:fs';
import {
  ConfigSyntaxError,
  type ParsedConfig,
  parseConfigText,
  jsonSyntaxErrorOffset as syntaxErrorOffset,
} from '@mpo/queue';
import { errorMessage } from '@mpo/util';
import { CliError, ExitCode } from './exit-codes.js';

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      `${what} ${path}: ${code === 'ENOENT' ? 'no such file' : errorMessage(err)}`,
      code === 'ENOENT' ? ExitCode.notFound : ExitCode.invalidInput,
    );
  }
}

/**
 * Reads a config or spec file, JSON or YAML (by extension: .yaml/.yml), keeping
 * positions so later problems can name the line (`locateProblems`). A syntax
 * error names file, line and column.
 */
export function readConfigDocument(path: string, what: string): ParsedConfig {
  const text = readText(path, what);
  try {
    return parseConfigText(text, path);
  } catch (err) {
    if (err instanceof ConfigSyntaxError) throw new CliError(`${what} ${err.message}`, ExitCode.invalidInput);
    throw err;
  }
}

/** The value of a JSON or YAML config file (see readConfigDocument). */
export function readConfigFile(path: string, what: string): unknown {
  return readConfigDocument(path, what).value;
}

/** Reads a JSON file; a missing file or a syntax error becomes a clear CLI error with its location. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readText(path, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    const pos = syntaxErrorOffset(text);
    const before = text.slice(0, pos).split('\n');
    const where = ` at line ${before.length}, column ${before.at(-1)!.length + 1}`;
    throw new CliError(`${what} ${path}: invalid JSON${where}: ${errorMessage(err)}`, ExitCode.invalidInput);
  }
}
