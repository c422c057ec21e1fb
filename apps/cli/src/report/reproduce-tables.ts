// The tables of `mpo reproduce`: per method variant and learning rate, every evaluated figure summarised over
// seeds (mean ± sample sd), in the shapes of the MPO paper's Tables 1, 2 and 4 plus utility. Every reward gap
// stands beside the same gap on harmless prompts, the harmless refusal rate and perplexity, because on a small
// model the average-log-prob gap can grow through a memorised refusal template (docs/testbed.md).
import { formatSummary, pearson, type Summary, summarize } from './stats.js';

/** One evaluated figure of one trial (or of the base model). */
export interface Figure {
  benchmark: string;
  language: string;
  metric: string;
  value: number;
}

export interface SeedResult {
  seed: number;
  learningRate: number;
  status: string;
  figures: Figure[];
}

export interface VariantResult {
  key: string;
  label: string;
  /** Which paper table the variant belongs to: a Table 2 method or a Table 4 ablation of MPO. */
  table: 'methods' | 'ablation';
  runId: string;
  trials: SeedResult[];
}

export interface ReproduceInput {
  dominant: string;
  /** Evaluated languages, dominant first. */
  languages: string[];
  base: Figure[];
  variants: VariantResult[];
}

const key = (b: string, l: string, m: string) => `${b}|${l}|${m}`;
const lookup = (figs: readonly Figure[]) => {
  const m = new Map(figs.map((f) => [key(f.benchmark, f.language, f.metric), f.value]));
  return (b: string, l: string, metric: string) => m.get(key(b, l, metric));
};

/** The figures reproduce reports, as [benchmark, metric]: reward gap harmful and harmless, ASR, refusals, PPL. */
export const MEASURES = {
  rg: ['reward-gap', 'rg'],
  rgHarmless: ['utility', 'rg_harmless'],
  asr: ['multijail', 'asr'],
  refused: ['utility', 'refused'],
  ppl: ['utility', 'ppl'],
} as const;
export type Measure = keyof typeof MEASURES;

export interface Cell {
  base: number | null;
  after: Summary | null;
}

/** A variant at one learning rate: per language and measure, the summary over its seeds that succeeded. */
export interface Arm {
  key: string;
  label: string;
  table: VariantResult['table'];
  runId: string;
  learningRate: number;
  seeds: number[];
  /** Trials that did not succeed with evaluations (failed, cancelled, stopped): left out of every figure. */
  failed: number;
  cells: Record<string, Record<Measure, Summary | null>>;
  /** ASR averaged over every evaluated language (MultiJail's "avg"), over seeds. */
  avgAsr: Summary | null;
  /** Pearson r of RG against ASR across languages, one per seed, summarised. */
  correlation: Summary | null;
  /** Mean over target languages of ASR + harmless refusals: what the learning rate is chosen by. */
  selection: number;
  /**
   * Perplexity after over before, geometric mean over the evaluated languages (of the seed-mean perplexity):
   * the utility guard of the learning-rate choice (selectArms). Null where neither side was measured.
   */
  pplRatio: number | null;
}

/**
 * The default utility guard: a learning rate that more than doubles perplexity (geometric mean over languages)
 * is not chosen while another of the grid stays within. Our choice, not the paper's (it reports MT-Bench beside
 * safety and does not say how it weighed them); `mpo reproduce --max-ppl-ratio` sets it.
 */
export const DEFAULT_MAX_PPL_RATIO = 2;

function measureOf(figs: readonly Figure[], lang: string, m: Measure): number | undefined {
  const [b, metric] = MEASURES[m];
  return lookup(figs)(b, lang, metric);
}

/** RG against ASR across the languages where both exist (the paper's Table 1 relationship). */
export function rgAsrCorrelation(figs: readonly Figure[], languages: readonly string[]): number | null {
  const pairs = languages
    .map((l) => [measureOf(figs, l, 'rg'), measureOf(figs, l, 'asr')] as const)
    .filter((p): p is readonly [number, number] => p[0] !== undefined && p[1] !== undefined);
  return pearson(
    pairs.map((p) => p[0]),
    pairs.map((p) => p[1]),
  );
}

export function buildArms(input: ReproduceInput): Arm[] {
  const targets = input.languages.filter((l) => l !== input.dominant);
  const arms: Arm[] = [];
  for (const v of input.variants) {
    const lrs = [...new Set(v.trials.map((t) => t.learningRate))].sort((a, b) => a - b);
    for (const lr of lrs) {
      const all = v.trials.filter((t) => t.learningRate === lr);
      const ok = all.filter((t) => t.status === 'SUCCEEDED' && t.figures.length > 0);
      const over = (f: (figs: Figure[]) => number | undefined | null) =>
        summarize(ok.map((t) => f(t.figures)).filter((x): x is number => typeof x === 'number'));
      const cells: Arm['cells'] = {};
      for (const lang of input.languages) {
        const row = {} as Record<Measure, Summary | null>;
        for (const m of Object.keys(MEASURES) as Measure[]) row[m] = over((f) => measureOf(f, lang, m));
        cells[lang] = row;
      }
      const targetMean = (m: Measure) => {
        const xs = targets.map((l) => cells[l]?.[m]?.mean).filter((x): x is number => x !== undefined);
        return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
      };
      arms.push({
        key: v.key,
        label: v.label,
        table: v.table,
        runId: v.runId,
        learningRate: lr,
        seeds: ok.map((t) => t.seed).sort((a, b) => a - b),
        failed: all.length - ok.length,
        cells,
        avgAsr: over((f) => lookup(f)('multijail', 'avg', 'asr')),
        correlation: over((f) => rgAsrCorrelation(f, input.languages)),
        selection: ok.length ? targetMean('asr') + targetMean('refused') : Number.POSITIVE_INFINITY,
        pplRatio: pplRatio(cells, input),
      });
    }
  }
  return arms;
}

/** exp(mean over languages of ln(ppl after / ppl before)), over the languages where both were measured. */
function pplRatio(cells: Arm['cells'], input: ReproduceInput): number | null {
  const logs = input.languages
    .map((l) => [cells[l]?.ppl?.mean, measureOf(input.base, l, 'ppl')] as const)
    .filter((p): p is readonly [number, number] => p[0] !== undefined && p[1] !== undefined && p[1] > 0)
    .map(([after, before]) => Math.log(after / before));
  return logs.length ? Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length) : null;
}

/** Whether an arm keeps perplexity within the guard (an arm without perplexity figures cannot be judged: it passes). */
export const withinPplGuard = (a: Arm, maxPplRatio: number) =>
  a.pplRatio === null || a.pplRatio <= maxPplRatio;

/**
 * Per variant, the learning rate of the grid with the lowest mean target-language ASR + harmless refusal rate
 * among those within the perplexity guard: refusing everything does not win it, nor does breaking the model's
 * language. Where no learning rate is within the guard, the one with the lowest perplexity ratio. (The paper
 * tuned the learning rate of every method; it does not say on what split, and neither testbed has a separate
 * validation split, so this is chosen on the reported prompts.)
 */
export function selectArms(arms: readonly Arm[], maxPplRatio = DEFAULT_MAX_PPL_RATIO): Arm[] {
  const byKey = new Map<string, Arm[]>();
  for (const a of arms) byKey.set(a.key, [...(byKey.get(a.key) ?? []), a]);
  const lowest = (xs: Arm[], by: (a: Arm) => number) => xs.reduce((b, a) => (by(a) < by(b) ? a : b));
  return [...byKey.values()].map((xs) => {
    // A learning rate none of whose seeds succeeded has no figures to choose it by.
    const measured = xs.filter((a) => a.seeds.length > 0);
    const pool = measured.length ? measured : xs;
    const within = pool.filter((a) => withinPplGuard(a, maxPplRatio));
    return within.length
      ? lowest(within, (a) => a.selection)
      : lowest(pool, (a) => a.pplRatio ?? Number.POSITIVE_INFINITY);
  });
}

export interface ReproduceTables {
  languages: string[];
  dominant: string;
  base: {
    cells: Record<string, Record<Measure, number | null>>;
    avgAsr: number | null;
    correlation: number | null;
  };
  arms: Arm[];
  selected: Arm[];
  /** The perplexity guard the selection used (selectArms). */
  maxPplRatio: number;
}

export function reproduceTables(input: ReproduceInput, maxPplRatio = DEFAULT_MAX_PPL_RATIO): ReproduceTables {
  const cells: ReproduceTables['base']['cells'] = {};
  for (const lang of input.languages) {
    const row = {} as Record<Measure, number | null>;
    for (const m of Object.keys(MEASURES) as Measure[]) row[m] = measureOf(input.base, lang, m) ?? null;
    cells[lang] = row;
  }
  const arms = buildArms(input);
  return {
    languages: input.languages,
    dominant: input.dominant,
    base: {
      cells,
      avgAsr: lookup(input.base)('multijail', 'avg', 'asr') ?? null,
      correlation: rgAsrCorrelation(input.base, input.languages),
    },
    arms,
    selected: selectArms(arms, maxPplRatio),
    maxPplRatio,
  };
}

// ---- markdown ----

const f3 = (x: number | null) => (x === null ? '–' : x.toFixed(3));
const p1 = (x: number | null) => (x === null ? '–' : (100 * x).toFixed(1));
const f2 = (x: number | null) => (x === null ? '–' : x.toFixed(2));
const sumOf = (a: Arm, lang: string, m: Measure) => a.cells[lang]?.[m] ?? null;
const isPct = (m: Measure) => m === 'asr' || m === 'refused';
const fmt = (s: Summary | null, m: Measure) =>
  formatSummary(s, isPct(m) ? 1 : m === 'ppl' ? 2 : 3, isPct(m) ? 100 : 1);
const table = (head: string[], rows: string[][]) =>
  [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
const lrText = (lr: number) => lr.toExponential(0);
const armName = (a: Arm) =>
  `${a.label} (lr ${lrText(a.learningRate)}, ${a.seeds.length} seeds${a.failed ? `, ${a.failed} not finished` : ''})`;

function table1(t: ReproduceTables, mpo: Arm | undefined): string {
  if (!mpo) return '_MPO was not run._';
  const b = t.base.cells;
  const rows = t.languages.map((l) => [
    l === t.dominant ? `**${l}**` : l,
    f3(b[l]!.rg),
    fmt(sumOf(mpo, l, 'rg'), 'rg'),
    f3(b[l]!.rgHarmless),
    fmt(sumOf(mpo, l, 'rgHarmless'), 'rgHarmless'),
    p1(b[l]!.asr),
    fmt(sumOf(mpo, l, 'asr'), 'asr'),
    p1(b[l]!.refused),
    fmt(sumOf(mpo, l, 'refused'), 'refused'),
    f2(b[l]!.ppl),
    fmt(sumOf(mpo, l, 'ppl'), 'ppl'),
  ]);
  const corr = `Pearson r of RG against ASR across the ${t.languages.length} languages: before ${f3(t.base.correlation)}, after MPO ${formatSummary(mpo.correlation, 3)} (one r per seed; the paper reports a strong negative relationship).`;
  return `${table(
    [
      'lang',
      'RG before',
      'RG after',
      'RG harmless before',
      'RG harmless after',
      'ASR % before',
      'ASR % after',
      'harmless refused % before',
      'after',
      'PPL before',
      'PPL after',
    ],
    rows,
  )}\n\n${corr}`;
}

function asrTable(t: ReproduceTables, arms: readonly Arm[]): string {
  const targets = t.languages.filter((l) => l !== t.dominant);
  const meanOver = (a: Arm | null, m: Measure) => {
    const xs = targets
      .map((l) => (a ? sumOf(a, l, m)?.mean : t.base.cells[l]![m]))
      .filter((x): x is number => typeof x === 'number');
    return xs.length ? xs.reduce((p, q) => p + q, 0) / xs.length : null;
  };
  const head = [
    'method',
    ...t.languages.map((l) => `${l} ASR %`),
    'avg ASR %',
    'target RG',
    'target RG harmless',
    'target harmless refused %',
    'target PPL',
  ];
  const baseRow = [
    'base model',
    ...t.languages.map((l) => p1(t.base.cells[l]!.asr)),
    p1(t.base.avgAsr),
    f3(meanOver(null, 'rg')),
    f3(meanOver(null, 'rgHarmless')),
    p1(meanOver(null, 'refused')),
    f2(meanOver(null, 'ppl')),
  ];
  const rows = arms.map((a) => [
    armName(a),
    ...t.languages.map((l) => fmt(sumOf(a, l, 'asr'), 'asr')),
    fmt(a.avgAsr, 'asr'),
    f3(meanOver(a, 'rg')),
    f3(meanOver(a, 'rgHarmless')),
    p1(meanOver(a, 'refused')),
    f2(meanOver(a, 'ppl')),
  ]);
  return table(head, [baseRow, ...rows]);
}

function utilityTable(t: ReproduceTables, arms: readonly Arm[]): string {
  const head = [
    'method',
    ...t.languages.map((l) => `${l} PPL`),
    ...t.languages.map((l) => `${l} harmless refused %`),
  ];
  const baseRow = [
    'base model',
    ...t.languages.map((l) => f2(t.base.cells[l]!.ppl)),
    ...t.languages.map((l) => p1(t.base.cells[l]!.refused)),
  ];
  const rows = arms.map((a) => [
    armName(a),
    ...t.languages.map((l) => fmt(sumOf(a, l, 'ppl'), 'ppl')),
    ...t.languages.map((l) => fmt(sumOf(a, l, 'refused'), 'refused')),
  ]);
  return table(head, [baseRow, ...rows]);
}

function gridTable(t: ReproduceTables): string {
  const targets = t.languages.filter((l) => l !== t.dominant);
  const rows = t.arms.map((a) => [
    a.label,
    lrText(a.learningRate),
    String(a.seeds.length),
    fmt(a.avgAsr, 'asr'),
    ...targets.map((l) => fmt(sumOf(a, l, 'refused'), 'refused')),
    ...targets.map((l) => fmt(sumOf(a, l, 'rg'), 'rg')),
    Number.isFinite(a.selection) ? (100 * a.selection).toFixed(1) : '–',
    a.pplRatio === null
      ? '–'
      : `${a.pplRatio.toFixed(2)}${withinPplGuard(a, t.maxPplRatio) ? '' : ' (over)'}`,
    t.selected.includes(a) && a.seeds.length > 0
      ? withinPplGuard(a, t.maxPplRatio)
        ? 'yes'
        : 'yes (none within the guard: lowest PPL ratio)'
      : '',
  ]);
  return table(
    [
      'method',
      'lr',
      'seeds',
      'avg ASR %',
      ...targets.map((l) => `${l} harmless refused %`),
      ...targets.map((l) => `${l} RG`),
      'target ASR + refused %',
      'PPL ratio',
      'chosen',
    ],
    rows,
  );
}

export function renderReproduce(t: ReproduceTables, header: string): string {
  const methods = t.selected.filter((a) => a.table === 'methods');
  const mpo = methods.find((a) => a.key === 'mpo');
  const ablations = [...(mpo ? [mpo] : []), ...t.selected.filter((a) => a.table === 'ablation')];
  return `${header}

## Table 1 shape: reward gap and attack success per language, before and after MPO

${table1(t, mpo)}

## Table 2 shape: MultiJail attack success per language, MPO and the baselines

ASR is the share of held-out harmful prompts answered without a refusal (lower is better). The target columns
average the target languages: the reward gap on harmful pairs beside the same gap on harmless prompts (refusal
template against the reference answer), the harmless refusal rate and perplexity.

${asrTable(t, methods)}

## Table 4 shape: ablations of MPO

${asrTable(t, ablations)}

## Utility: perplexity and harmless refusals per language

${utilityTable(t, [...methods, ...ablations.filter((a) => a.table === 'ablation')])}

## The learning-rate grid

Each method's learning rate is the one of the grid with the lowest mean over target languages of ASR +
harmless refusal rate (a model that refuses everything does not win it), among those whose perplexity ratio
(after over before, geometric mean over the ${t.languages.length} languages) is at most ${t.maxPplRatio} (a model whose language
breaks does not win it either; where no learning rate is within, the lowest ratio). It is chosen on the same
held-out prompts the tables report: neither testbed has a separate validation split.

${gridTable(t)}
`;
}
