import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Tokenizer } from '../src/index.js';

const repoRoot = resolve(import.meta.dirname, '../../..');
/** The repository's data folder (datasets/README.md). */
export const DATASETS = join(repoRoot, 'datasets');
export const GOLDEN_PAIRS = join(repoRoot, 'packages/engine/test/fixtures/golden-llama/pairs.jsonl');
export const MPO_FILES = {
  llama: join(DATASETS, 'mpo/llama_mpo_data.json'),
  gemma: join(DATASETS, 'mpo/gemma_mpo_data.json'),
  qwen: join(DATASETS, 'mpo/qwen_mpo_data.json'),
};

const dir = mkdtempSync(join(tmpdir(), 'mpo-data-test-'));
let counter = 0;
/** Writes a temporary file and returns its path. */
export function tmpFile(name: string, content: string): string {
  const p = join(dir, `${counter++}-${name}`);
  writeFileSync(p, content);
  return p;
}

/** UTF-8 bytes as ids, BOS 256, EOS 257: the byte-level testbed's vocabulary. */
export const byteTokenizer: Tokenizer = {
  encode: (t) => [...Buffer.from(t, 'utf8')],
  bosId: 256,
  eosId: 257,
};
