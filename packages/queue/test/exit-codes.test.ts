import { describe, expect, it } from 'vitest';
import { ExitCode, isInvalidInputExit } from '../src/index.js';

describe('CLI exit codes', () => {
  it('calls usage, invalid input and not found wrong input, and nothing else', () => {
    for (const code of [ExitCode.usage, ExitCode.invalidInput, ExitCode.notFound])
      expect(isInvalidInputExit(code), String(code)).toBe(true);
    for (const code of [ExitCode.ok, ExitCode.failure, ExitCode.unavailable, ExitCode.interrupted, null, 137])
      expect(isInvalidInputExit(code), String(code)).toBe(false);
  });
});
