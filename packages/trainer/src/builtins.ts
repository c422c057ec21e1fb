// Builtin ids for models and data that ship with (or beside) the repository,
// so configs and sweep specs can name them without knowing paths.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The read-only shared data folder (../shared beside the repository unless MPO_SHARED_DIR says otherwise). */
export const sharedDir = () => process.env.MPO_SHARED_DIR ?? resolve(repoRoot, '../shared');

export const BUILTIN_MODELS: Record<string, () => string> = {
  // The synthetic multilingual testbed (docs/testbed.md): rebuild with `mpo testbed build --seed 1`.
  'builtin:tiny-multilingual': () =>
    process.env.MPO_TESTBED_DIR ?? join(repoRoot, 'models', 'tiny-multilingual'),
  // The synthetic testbed with cross-lingual transfer (docs/testbed.md): English and three sister languages.
  'builtin:tiny-multilingual-transfer': () =>
    process.env.MPO_TRANSFER_TESTBED_DIR ?? join(repoRoot, 'models', 'tiny-multilingual-transfer'),
  // The golden fixture's tiny random Llama (for tests and smoke runs).
  'builtin:golden-llama': () => join(sharedDir(), 'fixtures', 'golden-llama'),
};

export const BUILTIN_DATA: Record<string, { path: () => string; format: 'mpo' | 'pretokenized' | 'alpaca' }> =
  {
    'builtin:mpo-llama': { path: () => join(sharedDir(), 'data/mpo/llama_mpo_data.json'), format: 'mpo' },
    'builtin:mpo-gemma': { path: () => join(sharedDir(), 'data/mpo/gemma_mpo_data.json'), format: 'mpo' },
    'builtin:mpo-qwen': { path: () => join(sharedDir(), 'data/mpo/qwen_mpo_data.json'), format: 'mpo' },
    'builtin:alpaca-en': {
      path: () => join(sharedDir(), 'data/general/alpaca_en_demo.json'),
      format: 'alpaca',
    },
    'builtin:alpaca-zh': {
      path: () => join(sharedDir(), 'data/general/alpaca_zh_demo.json'),
      format: 'alpaca',
    },
    // Written by `mpo testbed build --testbed tiny-multilingual-transfer` beside its checkpoint.
    'builtin:mpo-transfer': {
      path: () => join(BUILTIN_MODELS['builtin:tiny-multilingual-transfer']!(), 'data', 'mpo-transfer.json'),
      format: 'mpo',
    },
    'builtin:golden-pairs': {
      path: () => join(sharedDir(), 'fixtures/golden-llama/pairs.jsonl'),
      format: 'pretokenized',
    },
  };

export class UnknownBuiltinError extends Error {
  constructor(kind: 'model' | 'data', id: string, known: string[]) {
    super(`unknown builtin ${kind} ${id}; known: ${known.join(', ')}`);
    this.name = 'UnknownBuiltinError';
  }
}

export function resolveBuiltinModel(id: string): string {
  const f = BUILTIN_MODELS[id];
  if (!f) throw new UnknownBuiltinError('model', id, Object.keys(BUILTIN_MODELS));
  const dir = f();
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(
      `${id}: no model at ${dir}${id.startsWith('builtin:tiny-multilingual') ? ` (build it with \`mpo testbed build --testbed ${id.slice(8)} --seed 1\`)` : ''}`,
    );
  }
  return dir;
}

export function resolveBuiltinData(id: string): { path: string; format: 'mpo' | 'pretokenized' | 'alpaca' } {
  const d = BUILTIN_DATA[id];
  if (!d) throw new UnknownBuiltinError('data', id, Object.keys(BUILTIN_DATA));
  return { path: d.path(), format: d.format };
}
