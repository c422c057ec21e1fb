// Flag values checked once, with a message that names the flag and what it
// accepts (exit code 2, like any other usage error), instead of NaN reaching a
// loop or a config: `runs watch --interval abc` used to poll in a tight loop.
import { CliError, ExitCode } from './exit-codes.js';

export interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
  /** The lower bound itself is refused (e.g. an interval must be > 0). */
  exclusiveMin?: boolean;
}

function describe(rule: NumberRule): string {
  const kind = rule.integer ? 'an integer' : 'a number';
  const lo = rule.min === undefined ? '' : `${rule.exclusiveMin ? '>' : '>='} ${rule.min}`;
  const hi = rule.max === undefined ? '' : `<= ${rule.max}`;
  const bounds = [lo, hi].filter(Boolean).join(' and ');
  return bounds ? `${kind} ${bounds}` : kind;
}

/** The number in `--flag value`, or a usage error. */
export function numberFlag(flag: string, value: string, rule: NumberRule = {}): number {
  const x = value.trim() === '' ? Number.NaN : Number(value);
  const ok =
    Number.isFinite(x) &&
    (!rule.integer || Number.isInteger(x)) &&
    (rule.min === undefined || (rule.exclusiveMin ? x > rule.min : x >= rule.min)) &&
    (rule.max === undefined || x <= rule.max);
  if (!ok) throw new CliError(`--${flag} must be ${describe(rule)}, got "${value}"`, ExitCode.usage);
  return x;
}

/** Like numberFlag, for an optional flag: undefined stays undefined. */
export function optionalNumberFlag(flag: string, value: string | undefined, rule: NumberRule = {}) {
  return value === undefined ? undefined : numberFlag(flag, value, rule);
}

/** One of a fixed list of words, or a usage error. */
export function choiceFlag<const T extends readonly string[]>(
  flag: string,
  value: string,
  choices: T,
): T[number] {
  if (!choices.includes(value))
    throw new CliError(`--${flag} must be one of ${choices.join(', ')}, got "${value}"`, ExitCode.usage);
  return value as T[number];
}

/** `--json`: print results as JSON (one object, or JSON lines for streams) instead of text. */
export const JSON_FLAG = { json: { type: 'boolean' as const, default: false } };
