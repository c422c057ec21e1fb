// Loader for the LLaMA-Factory MPO JSON (circle-hit/MPO data/*.json): one row = the same prompt's
// dominant-language pair (source_*) and target-language pair (target_*), paired by row.
import type { Where } from './conversation.js';
import { parseMessages, parseResponse, splitPrompt } from './conversation.js';
import { DataError, type Dropped } from './errors.js';
import { hashHex } from './hash.js';
import { baseName, isObject, kind, readJsonArray } from './io.js';
import { assignDistinct, detectLanguage, KNOWN_LANGUAGES, scoreLanguages } from './lang.js';
import type { MpoRow, TextPair } from './types.js';

export interface MpoLoadOptions {
  /** Prefix of row ids (default: the file name without extension). */
  name?: string;
  /** The target language of every row, or of each row; skips detection. */
  lang?: string | ((row: { index: number; targetPrompt: string }) => string);
  /** Target languages the file holds (default: inferred from the data, as many as a prompt group has rows). */
  targetLanguages?: readonly string[];
  /** The dominant language (default: the language most source prompts are written in). */
  dominantLanguage?: string;
}

export interface MpoLoadResult {
  rows: MpoRow[];
  dropped: Dropped[];
  dominantLanguage: string;
  targetLanguages: string[];
  /** Rows whose label disagrees with their target prompt's own script/stopwords (e.g. an untranslated prompt). */
  notes: Array<{ id: string; note: string }>;
}

const FIELDS = [
  'source_conversations',
  'source_chosen',
  'source_rejected',
  'target_conversations',
  'target_chosen',
  'target_rejected',
] as const;

interface Parsed {
  index: number;
  id: string;
  where: Where;
  source: TextPair | { unusable: string };
  target: TextPair | { unusable: string };
  sourceKey: string;
  targetPrompt: string;
  targetText: { chosen: string; rejected: string };
  /** The row's own `target_lang` field, when it names its language (synthetic data does). */
  targetLang?: string;
}

function parsePair(
  r: Record<string, unknown>,
  side: 'source' | 'target',
  where: Where,
): TextPair | { unusable: string } {
  const conv = parseMessages(r[`${side}_conversations`], `${side}_conversations`, where);
  const chosen = parseResponse(r[`${side}_chosen`], `${side}_chosen`, where);
  const rejected = parseResponse(r[`${side}_rejected`], `${side}_rejected`, where);
  const p = splitPrompt(conv);
  if ('unusable' in p) return { unusable: `${side}: ${p.unusable}` };
  if (p.prompt.trim() === '') return { unusable: `${side} prompt is empty` };
  if (chosen.content.trim() === '') return { unusable: `${side} chosen response is empty` };
  if (rejected.content.trim() === '') return { unusable: `${side} rejected response is empty` };
  return { ...p, chosen: chosen.content, rejected: rejected.content };
}

function mode(xs: number[]): number {
  const c = new Map<number, number>();
  for (const x of xs) c.set(x, (c.get(x) ?? 0) + 1);
  let best = 0;
  let bestCount = -1;
  for (const [x, n] of [...c].sort((a, b) => a[0] - b[0])) {
    if (n > bestCount) {
      best = x;
      bestCount = n;
    }
  }
  return best;
}

/** Most frequent values first; ties by name so the result never depends on row order. */
function ranked(values: Array<string | undefined>): string[] {
  const c = new Map<string, number>();
  for (const v of values) if (v) c.set(v, (c.get(v) ?? 0) + 1);
  return [...c].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([v]) => v);
}

export function loadMpoJson(path: string, opts: MpoLoadOptions = {}): MpoLoadResult {
  // Long: one pass over the rows checking every field where it is read, so each error names its row and line.
  const { rows: raw, lines } = readJsonArray(path);
  const name = opts.name ?? baseName(path);
  const parsed: Parsed[] = raw.map((r, index) => {
    const where: Where = { file: path, line: lines[index] ?? 1, row: `row ${index}` };
    if (!isObject(r))
      throw new DataError(`row ${index}: expected an object, got ${kind(r)}`, path, where.line);
    for (const f of FIELDS) {
      if (!(f in r)) throw new DataError(`row ${index}: missing field ${f}`, path, where.line);
    }
    const source = parsePair(r, 'source', where);
    const target = parsePair(r, 'target', where);
    const srcConv = parseMessages(r.source_conversations, 'source_conversations', where);
    const tgtConv = parseMessages(r.target_conversations, 'target_conversations', where);
    return {
      index,
      id: `${name}:${index}`,
      where,
      source,
      target,
      // Translations of one prompt share the source (dominant-language) conversation verbatim.
      sourceKey: srcConv.map((m) => `${m.role}\u0000${m.content.trim().replace(/\s+/g, ' ')}`).join('\u0001'),
      targetPrompt: tgtConv.map((m) => m.content).join('\n'),
      targetText: {
        chosen: parseResponse(r.target_chosen, 'target_chosen', where).content,
        rejected: parseResponse(r.target_rejected, 'target_rejected', where).content,
      },
      ...(typeof r.target_lang === 'string' && r.target_lang ? { targetLang: r.target_lang } : {}),
    };
  });

  const groups = new Map<string, Parsed[]>();
  for (const p of parsed) {
    const g = groups.get(p.sourceKey);
    if (g) g.push(p);
    else groups.set(p.sourceKey, [p]);
  }

  const dominantLanguage =
    opts.dominantLanguage ??
    ranked(parsed.map((p) => detectLanguage('prompt' in p.source ? p.source.prompt : '')))[0] ??
    'en';

  const notes: Array<{ id: string; note: string }> = [];
  const langOf = new Map<number, string>();
  let targetLanguages: string[];
  // Rows that all name their language (`target_lang`, e.g. the synthetic testbed's) skip detection.
  const ownLang = parsed.every((p) => p.targetLang) ? (p: Parsed) => p.targetLang! : undefined;
  if (opts.lang === undefined && ownLang) {
    for (const p of parsed) langOf.set(p.index, ownLang(p));
    targetLanguages = ranked([...langOf.values()]).sort();
  } else if (opts.lang !== undefined) {
    const l = opts.lang;
    for (const p of parsed)
      langOf.set(p.index, typeof l === 'string' ? l : l({ index: p.index, targetPrompt: p.targetPrompt }));
    targetLanguages = ranked([...langOf.values()]).sort();
  } else {
    const k = opts.targetLanguages?.length ?? mode([...groups.values()].map((g) => g.length));
    const promptLang = parsed.map((p) => detectLanguage(p.targetPrompt));
    targetLanguages = opts.targetLanguages
      ? [...opts.targetLanguages]
      : ranked(promptLang).slice(0, k).sort();
    for (const l of targetLanguages) {
      if (!(KNOWN_LANGUAGES as readonly string[]).includes(l)) {
        throw new DataError(`cannot detect language "${l}"; pass lang explicitly`, path);
      }
    }
    for (const g of groups.values()) {
      // The prompt decides; the responses (usually, not always, in the same language) break ties and label rows
      // whose prompt is missing or was left untranslated.
      const scores = g.map((p) => {
        const sp = scoreLanguages(p.targetPrompt) as Record<string, number>;
        const sc = scoreLanguages(p.targetText.chosen) as Record<string, number>;
        const sr = scoreLanguages(p.targetText.rejected) as Record<string, number>;
        return Object.fromEntries(targetLanguages.map((l) => [l, sp[l]! + 0.25 * (sc[l]! + sr[l]!)]));
      });
      const assigned = assignDistinct(scores, targetLanguages);
      g.forEach((p, i) => {
        langOf.set(p.index, assigned[i]!);
        const own = promptLang[p.index];
        if (own !== assigned[i]) {
          notes.push({
            id: p.id,
            note: `target prompt reads as ${own ?? 'no language'}; labelled ${assigned[i]} from its prompt group and responses`,
          });
        }
      });
    }
  }

  const rows: MpoRow[] = [];
  const dropped: Dropped[] = [];
  for (const p of parsed) {
    // One row holds both pairs, so dropping it drops the pair with it: source and target can never misalign.
    if ('unusable' in p.source) dropped.push({ id: p.id, reason: p.source.unusable });
    else if ('unusable' in p.target) dropped.push({ id: p.id, reason: p.target.unusable });
    else {
      rows.push({
        id: p.id,
        index: p.index,
        lang: langOf.get(p.index)!,
        dominantLang: dominantLanguage,
        group: `g${hashHex(p.sourceKey)}`,
        source: p.source,
        target: p.target,
      });
    }
  }
  notes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { rows, dropped, dominantLanguage, targetLanguages, notes };
}
