// The MPO training data read as a pool of responses with weak labels, for mining refusal phrases and for
// building the detector's evaluation sample. Each of the three files (llama, gemma, qwen) holds the same 100
// prompts in 6 target languages; `*_chosen` are mostly refusals and `*_rejected` mostly compliant, but the
// target-side labels are noisy by design, so these are weak labels only.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { guessLanguage } from './script-lang.js';

export const MPO_FILES = ['llama_mpo_data.json', 'gemma_mpo_data.json', 'qwen_mpo_data.json'] as const;

export type MpoField = 'source_chosen' | 'source_rejected' | 'target_chosen' | 'target_rejected';
export const MPO_FIELDS: readonly MpoField[] = [
  'source_chosen',
  'source_rejected',
  'target_chosen',
  'target_rejected',
];

export interface MpoResponse {
  /** `<file stem>:<row>:<field>`, stable across runs: the key hand labels are stored under. */
  key: string;
  file: string;
  row: number;
  field: MpoField;
  /** Language of the prompt the response answers. */
  promptLang: string;
  /** Language the response is written in (guessed from its script); models sometimes switch. */
  lang: string;
  /** The English prompt of the row's prompt group, shared across the three files. */
  group: string;
  text: string;
  /** Weak label from the field name: chosen → refusal. */
  weakRefusal: boolean;
}

interface Turn {
  from: string;
  value: string;
}
type Row = Record<string, unknown>;

function turnValue(row: Row, field: string, file: string, index: number): string {
  const v = row[field] as Turn | Turn[] | undefined;
  const t = Array.isArray(v) ? v[v.length - 1] : v;
  if (!t || typeof t.value !== 'string')
    throw new Error(`${file}: row ${index}: field ${field} has no value`);
  return t.value;
}

/**
 * Loads every response of the MPO files in `dir`. Source-side responses repeat across the 6 rows of a prompt,
 * so each is kept once (at the prompt's first row). Groups tie the same prompt together across files: the
 * English-source files key by their prompt; a file with another source language is tied through any target
 * prompt it shares with them (the target translations are the same texts).
 */
export function loadMpoResponses(dir: string, files: readonly string[] = MPO_FILES): MpoResponse[] {
  const tables = files.map((f) => {
    const path = join(dir, f);
    const rows = JSON.parse(readFileSync(path, 'utf8')) as Row[];
    if (!Array.isArray(rows)) throw new Error(`${path}: expected a JSON array`);
    return {
      stem: basename(f).replace(/_mpo_data\.json$|\.json$/, ''),
      path,
      rows: rows.map((r, i) => ({
        i,
        source: turnValue(r, 'source_conversations', path, i),
        target: turnValue(r, 'target_conversations', path, i),
        r,
      })),
    };
  });
  const sourceLang = new Map(
    tables.map((t) => [t.stem, guessLanguage(t.rows.map((r) => r.source).join('\n')) ?? 'und']),
  );
  // Any prompt text of an English-source file → its English prompt.
  const toEnglish = new Map<string, string>();
  for (const t of tables) {
    if (sourceLang.get(t.stem) !== 'en') continue;
    for (const r of t.rows) {
      toEnglish.set(r.source, r.source);
      toEnglish.set(r.target, r.source);
    }
  }
  const out: MpoResponse[] = [];
  for (const t of tables) {
    const group = new Map<string, string>();
    for (const r of t.rows) {
      const hit = toEnglish.get(r.source) ?? toEnglish.get(r.target);
      if (hit && !group.has(r.source)) group.set(r.source, hit);
    }
    const seenSource = new Set<string>();
    for (const r of t.rows) {
      const g = group.get(r.source) ?? r.source;
      const srcLang = sourceLang.get(t.stem)!;
      const tgtLang = guessLanguage(r.target) ?? 'und';
      const fields: MpoField[] = seenSource.has(r.source)
        ? ['target_chosen', 'target_rejected']
        : [...MPO_FIELDS];
      seenSource.add(r.source);
      for (const field of fields) {
        const text = turnValue(r.r, field, t.path, r.i);
        out.push({
          key: `${t.stem}:${r.i}:${field}`,
          file: t.stem,
          row: r.i,
          field,
          promptLang: field.startsWith('source') ? srcLang : tgtLang,
          lang: guessLanguage(text) ?? 'und',
          group: g,
          text,
          weakRefusal: field.endsWith('chosen'),
        });
      }
    }
  }
  return out;
}

/**
 * Splits prompt groups in two by a seeded hash: `mine` (phrase mining) and `eval` (measurement). Splitting by
 * prompt rather than by response keeps translations of one answer from landing on both sides.
 */
export function splitOfGroup(group: string, seed = 'refusal-split-v1'): 'mine' | 'eval' {
  const h = createHash('sha256').update(`${seed}\n${group}`).digest();
  return (h[0]! & 1) === 0 ? 'mine' : 'eval';
}
