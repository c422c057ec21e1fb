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
    // The transfer testbed and its data are not committed (docs/testbed.md): built by `mpo testbed build`.
    const builtOnDemand = new Set(['builtin:tiny-multilingual-transfer', 'builtin:mpo-transfer']);
    for (const id of Object.keys(BUILTIN_MODELS).filter((i) => !builtOnDemand.has(i)))
      expect(existsSync(resolveBuiltinModel(id)), id).toBe(true);
    for (const id of Object.keys(BUILTIN_DATA).filter((i) => !builtOnDemand.has(i)))
      expect(existsSync(resolveBuiltinData(id).path), id).toBe(true);
  });

  it('says how to build the transfer testbed when it is missing', () => {
    const before = process.env.MPO_TRANSFER_TESTBED_DIR;
    process.env.MPO_TRANSFER_TESTBED_DIR = '/nonexistent/transfer-testbed';
    try {
      expect(() => resolveBuiltinModel('builtin:tiny-multilingual-transfer')).toThrow(
        /no model at \/nonexistent\/transfer-testbed \(build it with `mpo testbed build --testbed tiny-multilingual-transfer --seed 1`\)/,
      );
      expect(resolveBuiltinData('builtin:mpo-transfer').path).toBe(
        '/nonexistent/transfer-testbed/data/mpo-transfer.json',
      );
    } finally {
      if (before === undefined) delete process.env.MPO_TRANSFER_TESTBED_DIR;
      else process.env.MPO_TRANSFER_TESTBED_DIR = before;
    }
  });

  it('names the known ids when one is unknown', () => {
    expect(() => resolveBuiltinModel('builtin:gpt-5')).toThrow(
      /unknown builtin model builtin:gpt-5; known: builtin:tiny-multilingual/,
    );
  });
});
