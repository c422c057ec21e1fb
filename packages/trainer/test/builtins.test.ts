import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { DEFAULT_BUILTIN_DATA, DEFAULT_BUILTIN_MODELS } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import {
  BUILTIN_BENCHMARKS,
  BUILTIN_DATA,
  BUILTIN_MODELS,
  builtinCatalog,
  checkDatasets,
  resolveBuiltinBenchmark,
  resolveBuiltinData,
  resolveBuiltinModel,
} from '../src/builtins.js';
import { repoRoot } from './helpers.js';

const insideRepo = (p: string) => {
  const rel = relative(repoRoot, resolve(p));
  return rel !== '' && !rel.startsWith('..');
};

describe('builtin ids', () => {
  it('are the ones the API accepts, and each resolves to something on disk', () => {
    expect(Object.keys(BUILTIN_MODELS).sort()).toEqual(
      DEFAULT_BUILTIN_MODELS.map((m) => `builtin:${m}`).sort(),
    );
    expect(Object.keys(BUILTIN_DATA).sort()).toEqual(DEFAULT_BUILTIN_DATA.map((d) => `builtin:${d}`).sort());
    // Both testbeds are committed in models/ (docs/testbed.md), the transfer testbed with its data files.
    for (const id of Object.keys(BUILTIN_MODELS)) expect(existsSync(resolveBuiltinModel(id)), id).toBe(true);
    for (const id of Object.keys(BUILTIN_DATA))
      expect(existsSync(resolveBuiltinData(id).path), id).toBe(true);
    for (const id of Object.keys(BUILTIN_BENCHMARKS))
      expect(existsSync(resolveBuiltinBenchmark(id)), id).toBe(true);
  });

  it('resolve inside the repository only (a clone needs nothing beside it)', () => {
    const saved = process.env.MPO_TESTBED_DIR;
    delete process.env.MPO_TESTBED_DIR;
    try {
      for (const e of builtinCatalog()) expect(insideRepo(e.path), `${e.id} → ${e.path}`).toBe(true);
    } finally {
      if (saved !== undefined) process.env.MPO_TESTBED_DIR = saved;
    }
  });

  it('each has its rows, languages and licence in the catalog (datasets/manifest.json)', () => {
    const cat = new Map(builtinCatalog().map((e) => [e.id, e]));
    // The MPO paper's data: 600 rows = 100 PKU-SafeRLHF prompts x 6 target languages (datasets/README.md).
    expect(cat.get('builtin:mpo-llama')).toMatchObject({ kind: 'data', rows: 600, exists: true });
    expect(cat.get('builtin:mpo-llama')!.licence).toMatch(/Apache-2\.0.*CC BY-NC 4\.0/);
    expect(cat.get('builtin:multijail')).toMatchObject({ kind: 'benchmark', rows: 315, licence: 'MIT' });
    expect(cat.get('builtin:alpaca-zh')!.languages).toEqual(['zh']);
    expect(cat.get('builtin:golden-llama')).toMatchObject({ kind: 'model', exists: true });
    expect(cat.get('builtin:tiny-multilingual-transfer')).toMatchObject({
      kind: 'model',
      exists: true,
      languages: ['en', 'qaa', 'qab', 'qac'],
    });
    for (const e of cat.values()) {
      expect(e.bytes, e.id).toBeGreaterThan(0);
      expect(e.licence, e.id).not.toMatch(/not listed/);
    }
    // The committed checkpoint stays under the 50 MB.
    expect(cat.get('builtin:tiny-multilingual-transfer')!.bytes).toBeLessThanOrEqual(50e6);
  });

  it('--check verifies the committed testbeds against the sha256s in their testbed.json', () => {
    expect(checkDatasets()).toEqual([]);
    const dir = resolveBuiltinModel('builtin:tiny-multilingual-transfer');
    const t = JSON.parse(readFileSync(join(dir, 'testbed.json'), 'utf8'));
    // Every file the build wrote is recorded, the data that builtin:mpo-transfer names among them.
    expect(Object.keys(t.files)).toContain('data/mpo-transfer.json');
    expect(t.modelSafetensorsSha256).toMatch(/^[0-9a-f]{64}$/);
    // A copy whose data file lost a byte is named, and so is one without its weights.
    const copy = mkdtempSync(join(tmpdir(), 'mpo-testbed-check-'));
    const before = process.env.MPO_TRANSFER_TESTBED_DIR;
    try {
      cpSync(dir, copy, { recursive: true });
      const data = join(copy, 'data/mpo-transfer.json');
      writeFileSync(data, readFileSync(data).subarray(1));
      rmSync(join(copy, 'model.safetensors'));
      process.env.MPO_TRANSFER_TESTBED_DIR = copy;
      expect(checkDatasets()).toEqual([
        `${join(copy, 'model.safetensors')}: missing`,
        `${data}: sha256 differs from testbed.json`,
      ]);
    } finally {
      if (before === undefined) delete process.env.MPO_TRANSFER_TESTBED_DIR;
      else process.env.MPO_TRANSFER_TESTBED_DIR = before;
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('says how to build the transfer testbed when it is missing', () => {
    const before = process.env.MPO_TRANSFER_TESTBED_DIR;
    process.env.MPO_TRANSFER_TESTBED_DIR = '/nonexistent/transfer-testbed';
    try {
      expect(() => resolveBuiltinModel('builtin:tiny-multilingual-transfer')).toThrow(
        /no model at \/nonexistent\/transfer-testbed \(build it with `mpo testbed build --testbed tiny-multilingual-transfer --seed 1 --init-seed 2 --threads 1`\)/,
      );
      // The hint is the committed checkpoint's own rebuild line, so following it rebuilds the same bytes.
      const committed = join(repoRoot, 'models/tiny-multilingual-transfer/testbed.json');
      expect(JSON.parse(readFileSync(committed, 'utf8')).rebuild).toBe(
        'mpo testbed build --testbed tiny-multilingual-transfer --seed 1 --init-seed 2 --threads 1',
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
    expect(() => resolveBuiltinBenchmark('builtin:csrt')).toThrow(/unknown builtin benchmark builtin:csrt/);
  });
});
