// Utility: perplexity on held-out alpaca outputs, and the deterministic held-out split those outputs come from.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface NllPart {
  /** Sum of -log p(token) over the scored tokens, in nats. */
  sumNll: number;
  tokens: number;
}

/** exp(Σ sumNll / Σ tokens): perplexity over all parts pooled, weighting each part by its token count. */
export function perplexity(parts: readonly NllPart[]): number {
  let nll = 0;
  let tokens = 0;
  for (const [i, p] of parts.entries()) {
    if (!Number.isFinite(p.sumNll) || p.sumNll < 0)
      throw new RangeError(`part ${i}: sumNll must be finite and >= 0`);
    if (!Number.isInteger(p.tokens) || p.tokens < 0)
      throw new RangeError(`part ${i}: tokens must be an integer >= 0`);
    nll += p.sumNll;
    tokens += p.tokens;
  }
  if (tokens === 0) throw new RangeError('perplexity of zero tokens');
  return Math.exp(nll / tokens);
}

export interface HeldOutOptions {
  /** Any seed; the same seed and ids give the same split whatever the order of the items. */
  seed: string | number;
  /** How many items to hold out (at most all); or use `fraction`. */
  size?: number;
  fraction?: number;
}

export interface HeldOutSplit<T> {
  train: T[];
  heldOut: T[];
  /** Ids of the held-out items, sorted: what a training list must not contain. */
  heldOutIds: string[];
}

/**
 * Holds out `size` items chosen by a seeded hash of their ids: the same seed and ids give the same held-out
 * set regardless of order, and adding items does not reshuffle the ones already held out unless they are
 * displaced by a smaller hash. `train` and `heldOut` keep the input order.
 */
export function heldOutSplit<T>(
  items: readonly T[],
  idOf: (item: T, index: number) => string,
  opts: HeldOutOptions,
): HeldOutSplit<T> {
  const ids = items.map(idOf);
  if (new Set(ids).size !== ids.length) throw new Error('heldOutSplit: item ids must be unique');
  const size =
    opts.size ?? (opts.fraction !== undefined ? Math.round(items.length * opts.fraction) : Number.NaN);
  if (!Number.isInteger(size) || size < 0)
    throw new RangeError('heldOutSplit: give size (integer >= 0) or fraction');
  const rank = (id: string) => createHash('sha256').update(`${opts.seed}\n${id}`).digest('hex');
  const chosen = new Set(
    ids
      .map((id) => ({ id, r: rank(id) }))
      .sort((a, b) => (a.r < b.r ? -1 : a.r > b.r ? 1 : 0))
      .slice(0, Math.min(size, ids.length))
      .map((x) => x.id),
  );
  const train: T[] = [];
  const heldOut: T[] = [];
  items.forEach((it, i) => {
    (chosen.has(ids[i]!) ? heldOut : train).push(it);
  });
  return { train, heldOut, heldOutIds: [...chosen].sort() };
}

export interface AlpacaItem {
  /** `<file stem>:<index>`, the id @mpo/data gives alpaca rows. */
  id: string;
  instruction: string;
  input: string;
  output: string;
}

/** Reads an alpaca JSON file as items with ids `<file stem>:<index>` (e.g. `alpaca_en_demo:17`). */
export function readAlpaca(path: string): AlpacaItem[] {
  const rows = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  if (!Array.isArray(rows)) throw new Error(`${path}: expected a JSON array`);
  const stem = basename(path).replace(/\.(jsonl|json)$/i, '');
  return rows.map((r: Record<string, unknown>, i) => {
    if (typeof r?.instruction !== 'string' || typeof r.output !== 'string') {
      throw new Error(`${path}: row ${i}: needs string instruction and output`);
    }
    return {
      id: `${stem}:${i}`,
      instruction: r.instruction,
      input: typeof r.input === 'string' ? r.input : '',
      output: r.output,
    };
  });
}

/** The user turn of an alpaca item: its instruction, then its input on the next line when it has one. */
export const alpacaPrompt = (a: Pick<AlpacaItem, 'instruction' | 'input'>): string =>
  a.input ? `${a.instruction}\n${a.input}` : a.instruction;

/** Default utility split: 100 held-out items per alpaca file, seed `alpaca-heldout-v1`. */
export const ALPACA_HELDOUT = { seed: 'alpaca-heldout-v1', size: 100 } as const;

/** The held-out split of one alpaca file. Training lists must exclude `heldOutIds`. */
export function alpacaHeldOut(path: string, opts: HeldOutOptions = ALPACA_HELDOUT): HeldOutSplit<AlpacaItem> {
  return heldOutSplit(readAlpaca(path), (r) => r.id, opts);
}
