import { existsSync } from 'node:fs';
import { DEFAULT_BUILTIN_DATA, DEFAULT_BUILTIN_MODELS } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import { BUILTIN_DATA, BUILTIN_MODELS, resolveBuiltinData, resolveBuiltinModel } from '../src/builtins.js';

describe('builtin ids', () => {
  it('are the ones the API accepts, and each resolves to something on disk', () => {
    expect(Object.keys(BUILTIN_MODELS).sort()).toEqual(
      DEFAULT_BUILTIN_MODELS.map((m) => `builtin:${m}`).sort(),
    );
    expect(Object.keys(BUILTIN_DATA).sort()).toEqual(DEFAULT_BUILTIN_DATA.map((d) => `builtin:${d}`).sort());
    for (const id of Object.keys(BUILTIN_MODELS)) expect(existsSync(resolveBuiltinModel(id)), id).toBe(true);
    for (const id of Object.keys(BUILTIN_DATA))
      expect(existsSync(resolveBuiltinData(id).path), id).toBe(true);
  });

  it('names the known ids when one is unknown', () => {
    expect(() => resolveBuiltinModel('builtin:gpt-5')).toThrow(
      /unknown builtin model builtin:gpt-5; known: builtin:tiny-multilingual/,
    );
  });
});
