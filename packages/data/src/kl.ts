// KTO's mismatched completions (TRL KTOTrainer._get_kl_dataset): within consecutive chunks of the dataset, row i
// is paired with the completion of row i−1 (the first with the last). Fixed at data-preparation time, like TRL's,
// so the reference model's log-probs of these sequences can be precomputed once.
import type { TokenizedPairRow } from './types.js';

/** partner[i] for n rows in chunks of `chunkSize` (a chunk of one row is its own partner). */
export function klPartners(n: number, chunkSize: number): number[] {
  if (!Number.isInteger(chunkSize) || chunkSize < 1)
    throw new RangeError(`chunkSize must be ≥ 1, got ${chunkSize}`);
  const out = new Array<number>(n);
  for (let start = 0; start < n; start += chunkSize) {
    const end = Math.min(start + chunkSize, n);
    for (let i = start; i < end; i++) out[i] = i === start ? end - 1 : i - 1;
  }
  return out;
}

/**
 * Adds `klIds`: the partner's chosen response ids, cut to fit the row's prompt within cutoffLen (≥ 1 token).
 * The KL sequence of row i is promptIds_i + klIds_i.
 */
export function withKlCompletions(
  rows: readonly TokenizedPairRow[],
  opts: { chunkSize: number; cutoffLen: number },
): Array<TokenizedPairRow & { klIds: number[]; klPartner: string }> {
  const partners = klPartners(rows.length, opts.chunkSize);
  return rows.map((r, i) => {
    const p = rows[partners[i]!]!;
    const room = Math.max(1, opts.cutoffLen - r.promptIds.length);
    return { ...r, klIds: p.chosenIds.slice(0, room), klPartner: p.id };
  });
}
