// Truncation to a cutoff length, as LLaMA-Factory's pairwise/supervised processors do it.

/**
 * LLaMA-Factory's `infer_seqlen(source_len, target_len, cutoff_len)`: how many prompt and response tokens to keep.
 * - a short response (2·target < cutoff) is kept whole and the prompt takes what is left;
 * - else a short prompt (2·source < cutoff) is kept whole and the response takes what is left;
 * - else both are cut in proportion to their lengths.
 */
export function inferSeqlen(sourceLen: number, targetLen: number, cutoffLen: number): [number, number] {
  let maxTargetLen: number;
  if (targetLen * 2 < cutoffLen) maxTargetLen = cutoffLen;
  else if (sourceLen * 2 < cutoffLen) maxTargetLen = cutoffLen - sourceLen;
  else maxTargetLen = Math.trunc(cutoffLen * (targetLen / (sourceLen + targetLen)));
  const newTargetLen = Math.min(maxTargetLen, targetLen);
  const maxSourceLen = Math.max(cutoffLen - newTargetLen, 0);
  const newSourceLen = Math.min(maxSourceLen, sourceLen);
  return [newSourceLen, newTargetLen];
}

export interface TruncateOptions {
  /** Maximum tokens of prompt + response (LLaMA-Factory cutoff_len). */
  cutoffLen: number;
  /**
   * A prompt that alone fills the budget (≥ cutoffLen tokens): 'drop' the row (default: cutting a prompt's tail
   * also cuts the chat template's assistant header, which makes the sequence meaningless), or 'truncate' it to
   * cutoffLen − 1 tokens as LLaMA-Factory would.
   */
  promptOverflow?: 'drop' | 'truncate';
}

export type Truncated<T> = ({ ok: true; truncated: boolean } & T) | { ok: false; reason: string };

function checkCutoff(cutoffLen: number): void {
  if (!Number.isInteger(cutoffLen) || cutoffLen < 2) {
    throw new RangeError(
      `cutoffLen must be an integer ≥ 2 (one prompt and one response token), got ${cutoffLen}`,
    );
  }
}

/**
 * Keeps the head of the prompt and the heads of both responses, cut to the same length, so that chosen and
 * rejected share one prompt and one budget (the longer response decides, as in LLaMA-Factory). At least one
 * response token is kept: infer_seqlen alone can return 0 for a long response behind a long prompt.
 */
export function truncatePair(
  promptIds: readonly number[],
  chosenIds: readonly number[],
  rejectedIds: readonly number[],
  opts: TruncateOptions,
): Truncated<{ promptIds: number[]; chosenIds: number[]; rejectedIds: number[] }> {
  checkCutoff(opts.cutoffLen);
  const p = promptIds.length;
  if (p === 0) return { ok: false, reason: 'prompt has no tokens' };
  if (chosenIds.length === 0) return { ok: false, reason: 'chosen response has no tokens' };
  if (rejectedIds.length === 0) return { ok: false, reason: 'rejected response has no tokens' };
  const [s, t] = budget(p, Math.max(chosenIds.length, rejectedIds.length), opts);
  if (s === undefined)
    return { ok: false, reason: `prompt alone (${p} tokens) fills the cutoff of ${opts.cutoffLen}` };
  const out = {
    promptIds: promptIds.slice(0, s),
    chosenIds: chosenIds.slice(0, t),
    rejectedIds: rejectedIds.slice(0, t),
  };
  const truncated =
    out.promptIds.length < p ||
    out.chosenIds.length < chosenIds.length ||
    out.rejectedIds.length < rejectedIds.length;
  return { ok: true, truncated, ...out };
}

/** The single-response version (SFT). */
export function truncateSingle(
  promptIds: readonly number[],
  responseIds: readonly number[],
  opts: TruncateOptions,
): Truncated<{ promptIds: number[]; responseIds: number[] }> {
  checkCutoff(opts.cutoffLen);
  if (promptIds.length === 0) return { ok: false, reason: 'prompt has no tokens' };
  if (responseIds.length === 0) return { ok: false, reason: 'response has no tokens' };
  const [s, t] = budget(promptIds.length, responseIds.length, opts);
  if (s === undefined) {
    return {
      ok: false,
      reason: `prompt alone (${promptIds.length} tokens) fills the cutoff of ${opts.cutoffLen}`,
    };
  }
  const out = { promptIds: promptIds.slice(0, s), responseIds: responseIds.slice(0, t) };
  const truncated = s < promptIds.length || t < responseIds.length;
  return { ok: true, truncated, ...out };
}

function budget(p: number, r: number, opts: TruncateOptions): [number | undefined, number] {
  const cutoff = opts.cutoffLen;
  if (p >= cutoff && (opts.promptOverflow ?? 'drop') === 'drop') return [undefined, 0];
  let [s, t] = inferSeqlen(p, r, cutoff);
  if (t < 1) {
    t = 1;
    s = Math.min(p, cutoff - 1);
  }
  return [s, t];
}
