// Pairwise JSONL: {"prompt", "chosen", "rejected", "lang"?, "id"?, "group"?} per line.
import { DataError, type Dropped } from './errors.js';
import { hashHex } from './hash.js';
import { baseName, isObject, kind, readJsonl } from './io.js';
import { detectLanguage } from './lang.js';
import type { PairwiseRow } from './types.js';

export interface PairwiseLoadOptions {
  /** Prefix of generated ids (default: the file name without extension). */
  name?: string;
  /** Language of rows without a "lang" field (default: detected from the prompt). */
  lang?: string;
}

export interface LoadResult<T> {
  rows: T[];
  dropped: Dropped[];
}

function str(x: unknown, field: string, path: string, line: number, optional = false): string | undefined {
  if (x === undefined && optional) return undefined;
  if (typeof x !== 'string')
    throw new DataError(`field "${field}": expected a string, got ${kind(x)}`, path, line);
  return x;
}

/** Throws on a duplicate id: ids key reference caches and splits, so two rows must never share one. */
export function checkUniqueIds(
  rows: ReadonlyArray<{ id: string }>,
  path: string,
  lineOf?: (i: number) => number,
) {
  const seen = new Map<string, number>();
  rows.forEach((r, i) => {
    const prev = seen.get(r.id);
    if (prev !== undefined) {
      throw new DataError(`duplicate id ${JSON.stringify(r.id)} (first at row ${prev})`, path, lineOf?.(i));
    }
    seen.set(r.id, i);
  });
}

export function loadPairwiseJsonl(path: string, opts: PairwiseLoadOptions = {}): LoadResult<PairwiseRow> {
  const name = opts.name ?? baseName(path);
  const rows: PairwiseRow[] = [];
  const dropped: Dropped[] = [];
  const lines: number[] = [];
  for (const { value, line } of readJsonl(path)) {
    if (!isObject(value)) throw new DataError(`expected a JSON object, got ${kind(value)}`, path, line);
    const prompt = str(value.prompt, 'prompt', path, line)!;
    const chosen = str(value.chosen, 'chosen', path, line)!;
    const rejected = str(value.rejected, 'rejected', path, line)!;
    const id = str(value.id, 'id', path, line, true) ?? `${name}:${line}`;
    const lang = str(value.lang, 'lang', path, line, true) ?? opts.lang ?? detectLanguage(prompt) ?? 'und';
    const group = str(value.group, 'group', path, line, true) ?? `p${hashHex(prompt.trim())}`;
    const empty = !prompt.trim()
      ? 'prompt'
      : !chosen.trim()
        ? 'chosen response'
        : !rejected.trim()
          ? 'rejected response'
          : '';
    if (empty) {
      dropped.push({ id, reason: `${empty} is empty (line ${line})` });
      continue;
    }
    rows.push({ id, lang, group, prompt, chosen, rejected, history: [] });
    lines.push(line);
  }
  checkUniqueIds(rows, path, (i) => lines[i]!);
  return { rows, dropped };
}
