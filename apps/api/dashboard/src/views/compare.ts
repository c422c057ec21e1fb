// Several runs or trials side by side, at a URL that can be shared:
//   #/compare?items=<runId>,<runId>:<trial>,...&metric=loss
// A run stands for its best trial (by its target metric; trial 0 while none
// has a value), a `<runId>:<k>` item for trial k. One chart overlays the
// chosen metric's curve of every item; one table puts their per-language
// reward gap (RG) and MultiJail attack success (ASR) side by side.
import type { Evaluation, Run, Series } from '../api.js';
import { ApiError } from '../api.js';
import { lineChart } from '../charts.js';
import { h, replace, table } from '../dom.js';
import { num } from '../format.js';
import type { View } from '../view.js';
import { meanCurve } from './run/curves.js';
import { latestEvaluations } from './run/evaluations.js';

export interface CompareItem {
  runId: string;
  /** A trial index, or null for the run (its best trial). */
  trial: number | null;
}

const ITEM = /^([0-9a-fA-F-]{36})(?::(\d+))?$/;
const MAX_ITEMS = 12;
const POINTS = 400;
export const DEFAULT_METRIC = 'loss';

/** `items` of the URL → the items (malformed entries and duplicates dropped, at most 12). */
export function parseItems(param: string | null): CompareItem[] {
  const out: CompareItem[] = [];
  const seen = new Set<string>();
  for (const raw of (param ?? '').split(',')) {
    const m = ITEM.exec(raw.trim());
    if (!m) continue;
    const item = { runId: m[1]!.toLowerCase(), trial: m[2] === undefined ? null : Number(m[2]) };
    const key = itemKey(item);
    if (seen.has(key) || out.length >= MAX_ITEMS) continue;
    seen.add(key);
    out.push(item);
  }
  return out;
}

export const itemKey = (i: CompareItem) => (i.trial === null ? i.runId : `${i.runId}:${i.trial}`);

/** The URL of a comparison. */
export function compareHref(items: readonly CompareItem[], metric = DEFAULT_METRIC): string {
  const p = new URLSearchParams({ items: items.map(itemKey).join(',') });
  if (metric !== DEFAULT_METRIC) p.set('metric', metric);
  return `#/compare?${p}`;
}

interface Resolved {
  item: CompareItem;
  run: Run;
  trialIndex: number;
  label: string;
}

function resolve(item: CompareItem, run: Run): Resolved | { item: CompareItem; missing: string } {
  if (item.trial !== null) {
    if (!run.trials.some((t) => t.index === item.trial))
      return { item, missing: `run ${run.name} has no trial ${item.trial}` };
    return { item, run, trialIndex: item.trial, label: `${run.name} · trial ${item.trial}` };
  }
  const best = run.best?.trialIndex ?? 0;
  return { item, run, trialIndex: best, label: `${run.name} (best: trial ${best})` };
}

/** Rows of the side-by-side table: language → per item [RG, ASR]. */
export function sideBySide(
  resolved: readonly { runId: string; trialIndex: number }[],
  evaluationsByRun: ReadonlyMap<string, Evaluation[]>,
  dominant?: string,
): { languages: string[]; cells: Map<string, (number | null)[]> } {
  const pick = (r: { runId: string; trialIndex: number }, benchmark: string, metric: string) =>
    latestEvaluations(evaluationsByRun.get(r.runId) ?? []).filter(
      (e) => e.trialIndex === r.trialIndex && e.benchmark === benchmark && e.metric === metric,
    );
  const perItem = resolved.map((r) => ({
    rg: pick(r, 'reward-gap', 'rg'),
    asr: pick(r, 'multijail', 'asr'),
  }));
  const langs = new Set<string>();
  for (const p of perItem) for (const e of [...p.rg, ...p.asr]) langs.add(e.language);
  // The dominant language first, the ASR average last, the rest alphabetically.
  const rank = (l: string) => (l === dominant ? 0 : l === 'avg' ? 2 : 1);
  const languages = [...langs].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const cells = new Map<string, (number | null)[]>();
  for (const l of languages)
    cells.set(
      l,
      perItem.flatMap((p) => [
        p.rg.find((e) => e.language === l)?.value ?? null,
        p.asr.find((e) => e.language === l)?.value ?? null,
      ]),
    );
  return { languages, cells };
}

export const compareView =
  (query: URLSearchParams): View =>
  (ctx) => {
    // Long: one view; the chosen items, fetched series and charts are state shared by its render and poll closures.
    const items = parseItems(query.get('items'));
    const metric = query.get('metric') || DEFAULT_METRIC;
    ctx.title('Compare');
    const heading = h('h1', { tabindex: '-1', id: 'compare-title' }, 'Compare');
    const chosen = h('ul', { class: 'chips', id: 'compare-items', 'aria-label': 'Compared runs and trials' });
    const metricSelect = h('select', { id: 'compare-metric' });
    const chart = lineChart({ title: `${metric} per step`, x: 'step', y: metric, id: 'compare-chart' });
    const tableBox = h('div', { id: 'compare-table' });
    const notes = h('ul', { class: 'notes', id: 'compare-missing' });
    replace(
      ctx.main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, '← Runs')),
      heading,
      h(
        'p',
        { class: 'note' },
        'Pick runs on the Runs page or trials on a run page. A run stands for its best trial. This page’s address is the comparison: share it.',
      ),
      chosen,
      notes,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'compare-curves-title' },
        h('h2', { id: 'compare-curves-title' }, 'Curves'),
        h('div', { class: 'toolbar' }, h('label', { for: 'compare-metric' }, 'Metric '), metricSelect),
        chart.el,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'compare-table-title' },
        h('h2', { id: 'compare-table-title' }, 'Reward gap and attack success by language'),
        tableBox,
      ),
    );
    heading.focus();
    metricSelect.addEventListener('change', () => {
      location.hash = compareHref(items, metricSelect.value);
    });

    let stopped = false;
    const load = async () => {
      const runIds = [...new Set(items.map((i) => i.runId))];
      const runs = new Map<string, Run>();
      const evaluations = new Map<string, Evaluation[]>();
      const names = new Set<string>([DEFAULT_METRIC, metric]);
      const missing: string[] = [];
      await Promise.all(
        runIds.map(async (id) => {
          try {
            const [run, ev, catalog] = await Promise.all([
              ctx.api.run(id),
              ctx.api.evaluations(id),
              ctx.api.metrics(id, { points: 1 }),
            ]);
            runs.set(id, run);
            evaluations.set(id, ev.evaluations);
            for (const s of catalog.series) names.add(s.name);
          } catch (err) {
            if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 400)) throw err;
            missing.push(`run ${id} not found`);
          }
        }),
      );
      const resolved: Resolved[] = [];
      for (const item of items) {
        const run = runs.get(item.runId);
        if (!run) continue;
        const r = resolve(item, run);
        if ('missing' in r) missing.push(r.missing);
        else resolved.push(r);
      }
      const curves = await Promise.all(
        resolved.map((r) => ctx.api.metrics(r.run.id, { name: metric, trial: r.trialIndex, points: POINTS })),
      );
      if (stopped) return;
      render(
        resolved,
        curves.map((c) => c.series),
        evaluations,
        [...names].sort(),
        missing,
      );
    };

    function render(
      resolved: Resolved[],
      series: Series[][],
      evaluations: Map<string, Evaluation[]>,
      names: string[],
      missing: string[],
    ) {
      heading.textContent = `Compare ${resolved.length} run${resolved.length === 1 ? '' : 's'} or trials`;
      ctx.title(heading.textContent);
      replace(
        chosen,
        resolved.map((r, i) =>
          h(
            'li',
            { 'data-item': itemKey(r.item) },
            h('a', { href: `#/runs/${r.run.id}` }, r.label),
            ' ',
            h(
              'a',
              {
                href: compareHref(
                  items.filter((x) => itemKey(x) !== itemKey(r.item)),
                  metric,
                ),
                class: 'remove',
                'aria-label': `Remove ${r.label} from the comparison`,
                'data-color': i,
              },
              '×',
            ),
          ),
        ),
      );
      replace(
        notes,
        missing.map((m) => h('li', { class: 'error' }, m)),
      );
      replace(
        metricSelect,
        names.map((n) => h('option', { value: n, selected: n === metric }, n)),
      );
      chart.update(
        resolved.map((r, i) => {
          const byLang = series[i]!.map((s) => ({ steps: s.steps, values: s.values }));
          return { label: r.label, points: byLang.length ? meanCurve(byLang) : [], colorIndex: i };
        }),
      );
      const dominant = resolved[0]?.run.spec.dominantLanguage;
      const { languages, cells } = sideBySide(
        resolved.map((r) => ({ runId: r.run.id, trialIndex: r.trialIndex })),
        evaluations,
        dominant,
      );
      replace(
        tableBox,
        table(
          'Per-language reward gap (RG, higher is safer) and MultiJail attack success (ASR, lower is safer)',
          ['language', ...resolved.flatMap((r) => [`${r.label} RG`, `${r.label} ASR`])],
          languages.map((l) => [l, ...cells.get(l)!.map((v) => (v === null ? '—' : num(v)))]),
          {
            empty: resolved.length
              ? 'No evaluations yet for these trials.'
              : 'Nothing to compare: pick runs on the Runs page.',
            class: 'compare',
          },
        ),
      );
    }

    load().catch((err) => {
      if (!(err instanceof ApiError && err.status === 401))
        ctx.status(`Loading the comparison failed: ${(err as Error).message}`, 'error');
    });
    return () => {
      stopped = true;
      chart.destroy();
    };
  };
