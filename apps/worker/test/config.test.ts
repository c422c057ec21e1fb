// config.ts: the agent's configuration from its environment.
import { describe, expect, it } from 'vitest';
import { parseCommand } from '../src/config.js';

describe('MPO_CLI_COMMAND', () => {
  it('takes a JSON array or words', () => {
    expect(parseCommand('["node", "/a b/x.mjs"]')).toEqual(['node', '/a b/x.mjs']);
    expect(parseCommand(' node  fake.mjs ')).toEqual(['node', 'fake.mjs']);
    expect(() => parseCommand('[1]')).toThrow();
  });
});
