// A small RFC 4180 CSV reader. The benchmark files are a few hundred KB, so a whole-string parser is enough and
// keeps the error messages exact: every problem names the file and the physical line it starts on.

import { readFileSync } from 'node:fs';
import { errorMessage } from '@mpo/util';

export class CsvError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly line: number,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = 'CsvError';
  }
}

export interface CsvRecord {
  /** 1-based physical line on which the record starts (quoted fields may span several lines). */
  line: number;
  fields: string[];
}

export interface CsvTable {
  header: string[];
  records: CsvRecord[];
}

/**
 * Parses CSV text: comma separated, fields optionally quoted with `"`, `""` inside quotes is a quote, quoted
 * fields may hold commas and newlines, records end with LF or CRLF, a leading UTF-8 BOM is ignored. Every record
 * must have as many fields as the header. Blank lines between records are skipped.
 */
export function parseCsv(text: string, file = '<csv>'): CsvTable {
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const rows: CsvRecord[] = [];
  let line = 1;
  let i = 0;
  const n = src.length;
  while (i < n) {
    // Skip blank lines between records.
    if (src[i] === '\n' || (src[i] === '\r' && src[i + 1] === '\n')) {
      i += src[i] === '\r' ? 2 : 1;
      line++;
      continue;
    }
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let value = '';
      if (src[i] === '"') {
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n) throw new CsvError('unterminated quoted field', file, quoteLine);
          const c = src[i]!;
          if (c === '"') {
            if (src[i + 1] === '"') {
              value += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          value += c;
          i++;
        }
        const next = src[i];
        if (i < n && next !== ',' && next !== '\n' && !(next === '\r' && src[i + 1] === '\n')) {
          throw new CsvError(`unexpected ${JSON.stringify(next)} after a closing quote`, file, line);
        }
      } else {
        const from = i;
        while (i < n && src[i] !== ',' && src[i] !== '\n' && !(src[i] === '\r' && src[i + 1] === '\n')) {
          if (src[i] === '"') throw new CsvError('quote inside an unquoted field', file, line);
          i++;
        }
        value = src.slice(from, i);
      }
      fields.push(value);
      if (i >= n) break;
      if (src[i] === ',') {
        i++;
        continue;
      }
      // End of record: LF or CRLF.
      i += src[i] === '\r' ? 2 : 1;
      line++;
      break;
    }
    rows.push({ line: start, fields });
  }
  const head = rows.shift();
  if (!head) throw new CsvError('empty file: no header', file, 1);
  const header = head.fields.map((h) => h.trim());
  for (const r of rows) {
    if (r.fields.length !== header.length) {
      throw new CsvError(`expected ${header.length} fields, got ${r.fields.length}`, file, r.line);
    }
  }
  return { header, records: rows };
}

export function readCsv(path: string): CsvTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CsvError(`cannot read: ${errorMessage(e)}`, path, 0);
  }
  return parseCsv(text, path);
}

/** Column positions by name; throws naming the file if any is missing. */
export function columns<K extends string>(
  table: CsvTable,
  names: readonly K[],
  file: string,
): Record<K, number> {
  const out = {} as Record<K, number>;
  const missing: string[] = [];
  for (const name of names) {
    const idx = table.header.indexOf(name);
    if (idx < 0) missing.push(name);
    out[name] = idx;
  }
  if (missing.length) {
    throw new CsvError(
      `missing column(s) ${missing.join(', ')}; header is ${table.header.join(',')}`,
      file,
      1,
    );
  }
  return out;
}
