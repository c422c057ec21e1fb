// From a data spec to tokenized training examples: load, split by prompt
// group, filter languages, tokenize with the model's template, truncate, and
// attach what objectives may ask for (dominant pair, other-language pairs of
// the same prompt, KTO's mismatched completions).
import {
  type Dropped,
  type Encoders,
  loadAlpacaJson,
  loadMpoJson,
  loadPairwiseJsonl,
  loadPretokenizedJsonl,
  type MpoRow,
  splitByGroup,
  type TokenizedPair,
  type TokenizedPairRow,
  tokenizeMpo,
  tokenizePairwise,
  tokenizeSft,
  withKlCompletions,
} from '@mpo/data';
import type { DataSpec } from './config.js';
import type { PairIds, TrainExample } from './types.js';

export interface BuiltDataset {
  examples: TrainExample[];
  dropped: Dropped[];
  /** Held-out prompt groups (never trained on when split = train). */
  heldOutGroups: string[];
  languages: string[];
  dominantLanguage?: string;
}

const pair = (p: TokenizedPair): PairIds => ({
  prompt: p.promptIds,
  chosen: p.chosenIds,
  rejected: p.rejectedIds,
});

/** The rows a spec trains on: its languages, then its side of the held-out split, then its limit. */
function select<T extends { group: string; lang: string }>(all: T[], spec: DataSpec) {
  const langs = spec.languages;
  const rows = all.filter((r) => !langs || langs.includes(r.lang));
  const limit = (x: T[]) => (spec.limit !== undefined ? x.slice(0, spec.limit) : x);
  if (spec.split === 'all' || spec.heldOut === 0) return { rows: limit(rows), heldOutGroups: [] as string[] };
  const s = splitByGroup(rows, { heldOutFraction: spec.heldOut, seed: spec.splitSeed });
  return { rows: limit(spec.split === 'train' ? s.train : s.heldOut), heldOutGroups: s.heldOutGroups };
}

const languagesOf = (examples: TrainExample[]) => [...new Set(examples.map((e) => e.lang))].sort();

export function buildDataset(
  spec: DataSpec,
  encoders: Encoders,
  cutoff: number,
  opts: {
    vocabSize?: number;
    klChunk?: number;
    /** Replaces the MPO rows before tokenizing (an evaluation scoring other pairs of the same prompts). */
    mapRows?: (rows: readonly MpoRow[]) => MpoRow[];
  } = {},
): BuiltDataset {
  // Long: one case per data format (mpo, pairwise/pretokenized, alpaca) over the same encoders and cutoff.
  const trunc = { ...encoders, cutoffLen: cutoff };
  switch (spec.format) {
    case 'mpo': {
      const loaded = loadMpoJson(spec.path, {
        ...(spec.dominantLanguage ? { dominantLanguage: spec.dominantLanguage } : {}),
      });
      const tok = tokenizeMpo(opts.mapRows ? opts.mapRows(loaded.rows) : loaded.rows, trunc);
      // Pairs of one prompt in every language, for RG_d = {language} ablations;
      // the dominant language's pair is the source side.
      const byGroup = new Map<string, Record<string, PairIds>>();
      for (const r of tok.rows) {
        const g = byGroup.get(r.group) ?? {};
        g[r.lang] = pair(r.target);
        g[r.dominantLang] ??= pair(r.source);
        byGroup.set(r.group, g);
      }
      const { rows, heldOutGroups } = select(tok.rows, spec);
      const examples = rows.map<TrainExample>((r) => ({
        id: r.id,
        lang: r.lang,
        target: pair(r.target),
        dominant: pair(r.source),
        others: byGroup.get(r.group) ?? {},
      }));
      return {
        examples: withMismatched(examples, cutoff, opts.klChunk),
        dropped: [...loaded.dropped, ...tok.dropped],
        heldOutGroups,
        languages: languagesOf(examples),
        dominantLanguage: loaded.dominantLanguage,
      };
    }
    case 'pairwise':
    case 'pretokenized': {
      let tokRows: TokenizedPairRow[];
      let dropped: Dropped[];
      if (spec.format === 'pairwise') {
        const loaded = loadPairwiseJsonl(spec.path);
        const tok = tokenizePairwise(loaded.rows, trunc);
        tokRows = tok.rows;
        dropped = [...loaded.dropped, ...tok.dropped];
      } else {
        const loaded = loadPretokenizedJsonl(spec.path, opts.vocabSize ? { vocabSize: opts.vocabSize } : {});
        tokRows = loaded.rows;
        dropped = loaded.dropped;
      }
      const { rows, heldOutGroups } = select(tokRows, spec);
      const examples = rows.map<TrainExample>((r) => ({
        id: r.id,
        lang: r.lang,
        target: { prompt: r.promptIds, chosen: r.chosenIds, rejected: r.rejectedIds },
      }));
      return {
        examples: withMismatched(examples, cutoff, opts.klChunk),
        dropped,
        heldOutGroups,
        languages: languagesOf(examples),
      };
    }
    case 'alpaca': {
      // SFT data: the response is the "chosen" side; there is no rejected one,
      // so only methods that read the chosen sequence alone (SFT) can use it.
      const loaded = loadAlpacaJson(spec.path);
      const tok = tokenizeSft(loaded.rows, trunc);
      const { rows, heldOutGroups } = select(tok.rows, spec);
      const examples = rows.map<TrainExample>((r) => ({
        id: r.id,
        lang: r.lang,
        target: { prompt: r.promptIds, chosen: r.responseIds, rejected: r.responseIds },
      }));
      return {
        examples,
        dropped: [...loaded.dropped, ...tok.dropped],
        heldOutGroups,
        languages: languagesOf(examples),
      };
    }
  }
}

/** KTO's mismatched completion per example, fixed before shuffling (TRL builds its KL dataset the same way). */
function withMismatched(examples: TrainExample[], cutoff: number, chunk = 8): TrainExample[] {
  const rows = examples.map((e) => ({
    id: e.id,
    lang: e.lang,
    group: e.id,
    promptIds: e.target.prompt,
    chosenIds: e.target.chosen,
    rejectedIds: e.target.rejected,
  }));
  const withKl = withKlCompletions(rows, { chunkSize: chunk, cutoffLen: cutoff });
  return examples.map((e, i) => ({ ...e, mismatched: withKl[i]!.klIds }));
}
