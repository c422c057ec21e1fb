import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Tokenizer } from '../src/index.js';

export const SHARED = resolve(import.meta.dirname, '../../../../shared');
export const MPO_FILES = {
  llama: join(SHARED, 'data/mpo/llama_mpo_data.json'),
  gemma: join(SHARED, 'data/mpo/gemma_mpo_data.json'),
  qwen: join(SHARED, 'data/mpo/qwen_mpo_data.json'),
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
