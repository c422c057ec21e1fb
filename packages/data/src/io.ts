// Reading files with errors that point at a file and a line.

import { readFileSync } from 'node:fs';
import { errorMessage, isObject } from '@mpo/util';
import { DataError } from './errors.js';

export function readText(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(`cannot read file (${code ?? errorMessage(e)})`, path);
  }
  // A UTF-8 BOM is not part of the data (MultiJail.csv starts with one; editors add them to JSON too).
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** 1-based line of a character offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** JSON.parse with the failure located as file:line (V8 reports a character position). */
export function parseJson(text: string, file: string, baseLine = 1): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = errorMessage(e);
    const pos = /position (\d+)/.exec(msg);
    const line = pos ? baseLine - 1 + lineAt(text, Number(pos[1])) : baseLine - 1 + lineAt(text, text.length);
    throw new DataError(`malformed JSON: ${msg}`, file, line);
  }
}

/**
 * Start offset of every element of a top-level JSON array, found with a string-aware bracket scan, so that a
 * problem in element i can be reported at its line. Assumes `text` already parsed as JSON.
 */
export function arrayElementOffsets(text: string): number[] {
  const out: number[] = [];
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 32 || c === 10 || c === 13 || c === 9) continue;
    if (depth === 1 && expectElement) {
      out.push(i);
      expectElement = false;
    }
    if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      depth++;
      if (depth === 1 && c === 91) expectElement = true;
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
    else if (c === 44 /* , */ && depth === 1) expectElement = true;
  }
  return out;
}

/** A JSON file holding an array of objects, with the line where each element starts. */
export function readJsonArray(path: string): { rows: unknown[]; lines: number[] } {
  const text = readText(path);
  const data = parseJson(text, path);
  if (!Array.isArray(data))
    throw new DataError(`expected a JSON array at the top level, got ${kind(data)}`, path, 1);
  const offsets = arrayElementOffsets(text);
  // The running line count is incremental: one pass over the text, not one per element.
  const lines: number[] = [];
  let line = 1;
  let pos = 0;
  for (const off of offsets) {
    for (; pos < off; pos++) if (text.charCodeAt(pos) === 10) line++;
    lines.push(line);
  }
  return { rows: data, lines };
}

/** JSON Lines: one value per non-blank line, each with its 1-based line number. */
export function readJsonl(path: string): Array<{ value: unknown; line: number }> {
  const text = readText(path);
  const out: Array<{ value: unknown; line: number }> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    if (raw.trim() === '') continue;
    out.push({ value: parseJson(raw, path, i + 1), line: i + 1 });
  }
  return out;
}

export function kind(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? 'an object' : `${typeof x} ${JSON.stringify(x)}`;
}

// One definition in @mpo/util; re-exported because the trainer and eval read it from here.
export { isObject };

/** File name without directory and extension, for row ids. */
export function baseName(path: string): string {
  const b = path.split(/[\\/]/).pop() ?? path;
  return b.replace(/\.(jsonl|json)$/i, '');
}
