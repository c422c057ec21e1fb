// Alpaca JSON for SFT: [{"instruction", "input", "output", "system"?, "history"?}], LLaMA-Factory's alpaca format.
import { DataError, type Dropped } from './errors.js';
import { hashHex } from './hash.js';
import { baseName, isObject, kind, readJsonArray } from './io.js';
import { detectLanguage } from './lang.js';
import type { ChatMessage, SftRow } from './types.js';

export interface AlpacaLoadOptions {
  name?: string;
  /** Language of every row (default: detected from the instruction). */
  lang?: string;
}

export function loadAlpacaJson(
  path: string,
  opts: AlpacaLoadOptions = {},
): { rows: SftRow[]; dropped: Dropped[] } {
  const { rows: raw, lines } = readJsonArray(path);
  const name = opts.name ?? baseName(path);
  const rows: SftRow[] = [];
  const dropped: Dropped[] = [];
  raw.forEach((r, index) => {
    const line = lines[index];
    const where = `row ${index}`;
    if (!isObject(r)) throw new DataError(`${where}: expected an object, got ${kind(r)}`, path, line);
    for (const f of ['instruction', 'output'] as const) {
      if (typeof r[f] !== 'string')
        throw new DataError(`${where}: field "${f}": expected a string, got ${kind(r[f])}`, path, line);
    }
    for (const f of ['input', 'system'] as const) {
      if (r[f] !== undefined && typeof r[f] !== 'string') {
        throw new DataError(`${where}: field "${f}": expected a string, got ${kind(r[f])}`, path, line);
      }
    }
    const history: ChatMessage[] = [];
    if (r.history !== undefined) {
      if (!Array.isArray(r.history))
        throw new DataError(`${where}: field "history": expected an array`, path, line);
      r.history.forEach((turn, t) => {
        if (
          !Array.isArray(turn) ||
          turn.length !== 2 ||
          typeof turn[0] !== 'string' ||
          typeof turn[1] !== 'string'
        ) {
          throw new DataError(`${where}: history[${t}]: expected [query, response] strings`, path, line);
        }
        history.push({ role: 'user', content: turn[0] }, { role: 'assistant', content: turn[1] });
      });
    }
    const instruction = r.instruction as string;
    const input = (r.input as string | undefined) ?? '';
    const output = r.output as string;
    const id = `${name}:${index}`;
    // LLaMA-Factory joins instruction and a non-empty input with a newline.
    const prompt = input ? `${instruction}\n${input}` : instruction;
    const empty = !prompt.trim() ? 'instruction is empty' : !output.trim() ? 'output is empty' : '';
    if (empty) {
      dropped.push({ id, reason: empty });
      return;
    }
    rows.push({
      id,
      // The instruction decides: code, quoted English and mixed-language outputs would outvote it.
      lang: opts.lang ?? detectLanguage(instruction) ?? detectLanguage(`${prompt}\n${output}`) ?? 'und',
      group: `a${hashHex(prompt.trim())}`,
      prompt,
      response: output,
      history,
      ...(typeof r.system === 'string' && r.system ? { system: r.system } : {}),
    });
  });
  return { rows, dropped };
}
