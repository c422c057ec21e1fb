// Text rows to token ids through caller-supplied encoders (the engine owns chat templates; this package does not
// import it), then truncation. A row whose pair is unusable is dropped whole and reported.
import type { Dropped } from './errors.js';
import { type TruncateOptions, truncatePair, truncateSingle } from './truncate.js';
import type {
  ChatMessage,
  MpoRow,
  PairwiseRow,
  SftRow,
  TextPair,
  TokenizedMpoRow,
  TokenizedPair,
  TokenizedPairRow,
  TokenizedSftRow,
} from './types.js';

export interface Tokenizer {
  encode(text: string): number[];
  bosId?: number;
  eosId?: number;
}

/** Context a chat template may need besides the prompt text. */
export interface PromptContext {
  history: ChatMessage[];
  system?: string;
  lang: string;
}

export interface Encoders {
  /** Prompt ids, incl. BOS and the template's assistant header. */
  encodePrompt(prompt: string, ctx: PromptContext): number[];
  /** Response ids, incl. EOS. */
  encodeResponse(response: string): number[];
}

/** No chat template: BOS + prompt / response + EOS (when the tokenizer has them). For byte-level test models. */
export function plainEncoders(tok: Tokenizer): Encoders {
  return {
    encodePrompt: (prompt) =>
      tok.bosId !== undefined ? [tok.bosId, ...tok.encode(prompt)] : tok.encode(prompt),
    encodeResponse: (response) =>
      tok.eosId !== undefined ? [...tok.encode(response), tok.eosId] : tok.encode(response),
  };
}

export type TokenizeOptions = Encoders & TruncateOptions;

function promptContext(x: { history: ChatMessage[]; system?: string }, lang: string): PromptContext {
  return { history: x.history, lang, ...(x.system !== undefined ? { system: x.system } : {}) };
}

function encodePair(pair: TextPair, lang: string, opts: TokenizeOptions) {
  if (!pair.prompt.trim()) return { ok: false as const, reason: 'prompt is empty' };
  if (!pair.chosen.trim()) return { ok: false as const, reason: 'chosen response is empty' };
  if (!pair.rejected.trim()) return { ok: false as const, reason: 'rejected response is empty' };
  return truncatePair(
    opts.encodePrompt(pair.prompt, promptContext(pair, lang)),
    opts.encodeResponse(pair.chosen),
    opts.encodeResponse(pair.rejected),
    opts,
  );
}

/** Encodes each row, keeping the ones that encode and reporting the others by id with the reason `encode` returns. */
function encodeRows<R extends { id: string }, T extends object>(
  rows: readonly R[],
  encode: (r: R) => T | string,
): { rows: T[]; dropped: Dropped[] } {
  const out: T[] = [];
  const dropped: Dropped[] = [];
  for (const r of rows) {
    const e = encode(r);
    if (typeof e === 'string') dropped.push({ id: r.id, reason: e });
    else out.push(e);
  }
  return { rows: out, dropped };
}

/** The fields a tokenized row keeps from its text row. */
const rowTag = (r: { id: string; lang: string; group: string }) => ({
  id: r.id,
  lang: r.lang,
  group: r.group,
});

export function tokenizePairwise(
  rows: readonly PairwiseRow[],
  opts: TokenizeOptions,
): { rows: TokenizedPairRow[]; dropped: Dropped[] } {
  return encodeRows(rows, (r) => {
    const t = encodePair(r, r.lang, opts);
    if (!t.ok) return t.reason;
    return {
      ...rowTag(r),
      promptIds: t.promptIds,
      chosenIds: t.chosenIds,
      rejectedIds: t.rejectedIds,
      ...(t.truncated ? { truncated: true } : {}),
    };
  });
}

/**
 * Source and target pairs are truncated independently (each is its own sequence pair, as in the official code),
 * but kept or dropped together: the official code drops an invalid source example without its target, which
 * shifts every later row out of alignment; here a row either keeps both pairs or is reported as dropped.
 */
export function tokenizeMpo(
  rows: readonly MpoRow[],
  opts: TokenizeOptions,
): { rows: TokenizedMpoRow[]; dropped: Dropped[] } {
  return encodeRows(rows, (r) => {
    const s = encodePair(r.source, r.dominantLang, opts);
    const t = encodePair(r.target, r.lang, opts);
    if (!s.ok || !t.ok) {
      const reasons = [!s.ok ? `source: ${s.reason}` : '', !t.ok ? `target: ${t.reason}` : ''].filter(
        Boolean,
      );
      return reasons.join('; ');
    }
    const pick = (x: TokenizedPair): TokenizedPair => ({
      promptIds: x.promptIds,
      chosenIds: x.chosenIds,
      rejectedIds: x.rejectedIds,
    });
    return {
      id: r.id,
      index: r.index,
      lang: r.lang,
      dominantLang: r.dominantLang,
      group: r.group,
      source: pick(s),
      target: pick(t),
      ...(s.truncated || t.truncated ? { truncated: { source: s.truncated, target: t.truncated } } : {}),
    };
  });
}

export function tokenizeSft(
  rows: readonly SftRow[],
  opts: TokenizeOptions,
): { rows: TokenizedSftRow[]; dropped: Dropped[] } {
  return encodeRows(rows, (r) => {
    if (!r.prompt.trim()) return 'prompt is empty';
    if (!r.response.trim()) return 'response is empty';
    const prompt = opts.encodePrompt(r.prompt, promptContext(r, r.lang));
    const t = truncateSingle(prompt, opts.encodeResponse(r.response), opts);
    if (!t.ok) return t.reason;
    return {
      ...rowTag(r),
      promptIds: t.promptIds,
      responseIds: t.responseIds,
      ...(t.truncated ? { truncated: true } : {}),
    };
  });
}
