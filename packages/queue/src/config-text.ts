// Config and spec text, JSON or YAML, parsed so that every later problem can
// name its file, line and field: `parseConfigText` keeps the YAML document
// (JSON is YAML 1.2 flow syntax, so the same positions serve both) and
// `locate` turns a problem's dotted path ("training.steps", "data[1]") into
// "file:line:column: training.steps: ...".
import { errorMessage } from '@mpo/util';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { Problem } from './problems.js';

export type ConfigFormat = 'json' | 'yaml';

export interface ParsedConfig {
  value: unknown;
  format: ConfigFormat;
  /** Where the text came from (a file name, "request body"). */
  source: string;
  /** 1-based line and column of the value (or key) at a dotted path; undefined when absent. */
  position(path: string): { line: number; column: number } | undefined;
}

/** A parse error, with its position in the text. */
export class ConfigSyntaxError extends Error {
  constructor(
    readonly source: string,
    readonly line: number,
    readonly column: number,
    readonly reason: string,
  ) {
    super(`${source}:${line}:${column}: ${reason}`);
    this.name = 'ConfigSyntaxError';
  }
}

/** The format a file name says (.yaml/.yml → yaml, else json); content sniffing when there is no name. */
export function configFormatOf(source: string, text: string): ConfigFormat {
  if (/\.ya?ml$/i.test(source)) return 'yaml';
  if (/\.json$/i.test(source)) return 'json';
  return /^\s*[[{]/.test(text) ? 'json' : 'yaml';
}

/** "training.steps" / "data[1].path" → ['training', 'steps'] / ['data', 1, 'path']. */
export function pathSegments(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

export function parseConfigText(text: string, source: string, format?: ConfigFormat): ParsedConfig {
  const fmt = format ?? configFormatOf(source, text);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError) {
    const at = lines.linePos(firstError.pos[0]);
    throw new ConfigSyntaxError(
      source,
      at.line,
      at.col,
      `invalid ${fmt === 'json' ? 'JSON' : 'YAML'}: ${firstError.message.split('\n')[0]}`,
    );
  }
  let value: unknown;
  if (fmt === 'json') {
    try {
      value = JSON.parse(text);
    } catch (err) {
      // YAML accepted what JSON does not (comments, single quotes, ...): say where JSON stops.
      const at = lines.linePos(jsonSyntaxErrorOffset(text));
      throw new ConfigSyntaxError(source, at.line, at.col, `invalid JSON: ${errorMessage(err)}`);
    }
  } else value = doc.toJS({ maxAliasCount: 100 });
  const position = (path: string) => {
    let node: unknown = doc.contents;
    let key: Node | null = null;
    for (const seg of pathSegments(path)) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (!pair) break;
        key = pair.key as Node;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
        key = null;
        node = node.items[seg];
      } else break;
    }
    const at = ((node as Node | null)?.range ?? key?.range)?.[0];
    if (at === undefined) return undefined;
    const p = lines.linePos(at);
    return { line: p.line, column: p.col };
  };
  return { value, format: fmt, source, position };
}

/** Problems as "file:line:col: path: reason" lines (the line of the deepest part of the path found). */
export function locateProblems(parsed: ParsedConfig, problems: readonly Problem[]): string[] {
  return problems.map((p) => {
    const at = parsed.position(p.path);
    const where = at ? `${parsed.source}:${at.line}:${at.column}` : parsed.source;
    return `${where}: ${p.path || '(root)'}: ${p.reason}`;
  });
}

/**
 * Offset of the first character that makes `text` invalid JSON. Node 20's
 * JSON.parse does not always report a position, but a prefix that is merely
 * cut short fails at its own end, so the longest such prefix is found by
 * binary search.
 */
export function jsonSyntaxErrorOffset(text: string): number {
  const truncatedOnly = (n: number) => {
    try {
      JSON.parse(text.slice(0, n));
      return true;
    } catch (e) {
      const msg = errorMessage(e);
      // Cut-short prefixes fail at their very end: either this message, or an
      // "... at position N" with N the prefix length.
      const at = /at position (\d+)/.exec(msg);
      return /end of JSON input/.test(msg) || (at !== null && Number(at[1]) >= n);
    }
  };
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (truncatedOnly(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
