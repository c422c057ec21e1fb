// Pre-tokenized JSONL: {"id", "lang", "prompt_ids", "chosen_ids", "rejected_ids", "group"?} per line; the scored
// sequence is exactly prompt_ids + chosen_ids (nothing is added).
import { DataError } from './errors.js';
import { isObject, kind, readJsonl } from './io.js';
import { checkUniqueIds, type LoadResult } from './pairwise.js';
import type { TokenizedPairRow } from './types.js';

export interface PretokenizedLoadOptions {
  /** When given, every id must be < vocabSize. */
  vocabSize?: number;
}

function ids(x: unknown, field: string, path: string, line: number, vocab?: number): number[] {
  if (!Array.isArray(x))
    throw new DataError(`field "${field}": expected an array of token ids, got ${kind(x)}`, path, line);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (vocab !== undefined && v >= vocab)) {
      const range = vocab !== undefined ? ` in [0, ${vocab})` : ' ≥ 0';
      throw new DataError(
        `field "${field}"[${i}]: expected an integer token id${range}, got ${JSON.stringify(v)}`,
        path,
        line,
      );
    }
  }
  return x as number[];
}

export function loadPretokenizedJsonl(
  path: string,
  opts: PretokenizedLoadOptions = {},
): LoadResult<TokenizedPairRow> {
  const rows: TokenizedPairRow[] = [];
  const dropped: LoadResult<TokenizedPairRow>['dropped'] = [];
  const lines: number[] = [];
  for (const { value, line } of readJsonl(path)) {
    if (!isObject(value)) throw new DataError(`expected a JSON object, got ${kind(value)}`, path, line);
    if (typeof value.id !== 'string' || value.id === '') {
      throw new DataError(`field "id": expected a non-empty string, got ${kind(value.id)}`, path, line);
    }
    if (typeof value.lang !== 'string')
      throw new DataError(`field "lang": expected a string, got ${kind(value.lang)}`, path, line);
    if (value.group !== undefined && typeof value.group !== 'string') {
      throw new DataError(`field "group": expected a string, got ${kind(value.group)}`, path, line);
    }
    const promptIds = ids(value.prompt_ids, 'prompt_ids', path, line, opts.vocabSize);
    const chosenIds = ids(value.chosen_ids, 'chosen_ids', path, line, opts.vocabSize);
    const rejectedIds = ids(value.rejected_ids, 'rejected_ids', path, line, opts.vocabSize);
    const empty = !promptIds.length
      ? 'prompt_ids'
      : !chosenIds.length
        ? 'chosen_ids'
        : !rejectedIds.length
          ? 'rejected_ids'
          : '';
    if (empty) {
      dropped.push({ id: value.id, reason: `${empty} is empty (line ${line})` });
      continue;
    }
    rows.push({
      id: value.id,
      lang: value.lang,
      // Without a group field each prompt is its own group (identical prompt ids share one).
      group: (value.group as string | undefined) ?? `t${promptIds.join(',')}`,
      promptIds,
      chosenIds,
      rejectedIds,
    });
    lines.push(line);
  }
  checkUniqueIds(rows, path, (i) => lines[i]!);
  return { rows, dropped };
}
