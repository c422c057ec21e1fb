// The run page's evaluations: reward gap and MultiJail attack success per
// language as bars (one trial, or all of a few side by side), and every latest
// result in a table with a link to its generations.
import type { Evaluation, Run } from '../../api.js';
import { barChart } from '../../charts.js';
import { h, replace, table } from '../../dom.js';
import { num } from '../../format.js';
import { GENERATION_BENCHMARKS, type GenerationsSection } from '../generations.js';

/** The latest value per (trial, benchmark, language, metric). */
export function latestEvaluations(rows: Evaluation[]): Evaluation[] {
  const out = new Map<string, Evaluation>();
  for (const e of rows) {
    const k = `${e.trialIndex}|${e.benchmark}|${e.language}|${e.metric}`;
    const prev = out.get(k);
    if (!prev || prev.createdAt <= e.createdAt) out.set(k, e);
  }
  return [...out.values()];
}

/** One bar per language (the dominant one first) for each trial shown, of one benchmark's metric. */
function bars(rows: Evaluation[], trials: number[], benchmark: string, metric: string, dominant?: string) {
  const sel = rows.filter((e) => e.benchmark === benchmark && e.metric === metric);
  const langs = [...new Set(sel.map((e) => e.language))].sort((a, b) =>
    a === dominant ? -1 : b === dominant ? 1 : a.localeCompare(b),
  );
  return {
    langs,
    datasets: trials
      .filter((ti) => sel.some((e) => e.trialIndex === ti))
      .map((ti) => ({
        label: `trial ${ti}`,
        colorIndex: ti,
        values: langs.map((l) => sel.find((e) => e.trialIndex === ti && e.language === l)?.value ?? null),
      })),
  };
}

/** Every latest result shown, with a link to the generations behind the benchmarks that keep them. */
function resultsTable(shown: Evaluation[], generations: GenerationsSection) {
  return table(
    'Evaluation results',
    ['trial', 'benchmark', 'language', 'metric', 'value', 'n', 'generations'],
    shown.map((e) => [
      `trial ${e.trialIndex}`,
      e.benchmark,
      e.language,
      e.metric,
      num(e.value),
      String(e.n),
      GENERATION_BENCHMARKS.includes(e.benchmark)
        ? generations.link(
            { trial: e.trialIndex, benchmark: e.benchmark, language: e.language === 'avg' ? '' : e.language },
            'read',
            `Read the generations of trial ${e.trialIndex}, ${e.benchmark}, ${e.language}`,
          )
        : '',
    ]),
    { empty: 'No evaluations yet: each trial is evaluated when its training ends.', captionHidden: true },
  );
}

/**
 * Fills the trial picker (with "all" when several trials have results) and returns the trials to show:
 * the user's choice, else all of up to four, else the best trial, else the first.
 */
function chooseTrials(
  select: HTMLSelectElement,
  withEvals: number[],
  choice: string | undefined,
  best: number | undefined,
): number[] {
  const current = select.value;
  const options = [...(withEvals.length > 1 ? ['all'] : []), ...withEvals.map(String)];
  if (options.join() !== [...select.options].map((o) => o.value).join()) {
    replace(
      select,
      options.map((o) => h('option', { value: o }, o === 'all' ? 'all trials' : `trial ${o}`)),
    );
    select.value =
      choice && options.includes(choice)
        ? choice
        : withEvals.length > 1 && withEvals.length <= 4
          ? 'all'
          : best !== undefined && withEvals.includes(best)
            ? String(best)
            : (options[0] ?? current);
  }
  const value = select.value;
  return value === 'all' ? withEvals : value ? [Number(value)] : [];
}

export interface EvaluationsSection {
  el: HTMLElement;
  update(run: Run, evaluations: Evaluation[]): void;
  dispose(): void;
}

export function evaluationsSection(generations: GenerationsSection): EvaluationsSection {
  const select = h('select', { id: 'eval-trial' });
  const toolbar = h(
    'div',
    { class: 'toolbar', hidden: true },
    h('label', { for: 'eval-trial' }, 'Trial '),
    select,
  );
  const charts = h('div', { class: 'grid charts', id: 'eval-charts' });
  const tableBox = h('div', { id: 'eval-table' });
  const rgBars = barChart({
    title: 'Reward gap by language (higher is safer)',
    y: 'reward gap',
    id: 'rg-bars',
  });
  const asrBars = barChart({
    title: 'MultiJail attack success by language (lower is safer)',
    y: 'attack success rate',
    id: 'asr-bars',
  });
  replace(charts, rgBars.el, asrBars.el);
  let run: Run | undefined;
  let evaluations: Evaluation[] = [];
  let choice: string | undefined;

  const render = () => {
    const rows = latestEvaluations(evaluations);
    const withEvals = [...new Set(rows.map((e) => e.trialIndex))].sort((a, b) => a - b);
    const trials = chooseTrials(select, withEvals, choice, run?.best?.trialIndex);
    toolbar.hidden = select.options.length === 0;
    const dominant = run?.spec.dominantLanguage;
    const rg = bars(rows, trials, 'reward-gap', 'rg', dominant);
    rgBars.update(rg.langs, rg.datasets);
    const asr = bars(rows, trials, 'multijail', 'asr', dominant);
    asrBars.update(asr.langs, asr.datasets);
    const shown = rows
      .filter((e) => trials.includes(e.trialIndex))
      .sort(
        (a, b) =>
          a.trialIndex - b.trialIndex ||
          a.benchmark.localeCompare(b.benchmark) ||
          a.language.localeCompare(b.language) ||
          a.metric.localeCompare(b.metric),
      );
    replace(tableBox, resultsTable(shown, generations));
  };
  select.addEventListener('change', () => {
    choice = select.value;
    render();
  });

  return {
    el: h(
      'section',
      { class: 'card', 'aria-labelledby': 'eval-title', id: 'evaluations' },
      h('h2', { id: 'eval-title' }, 'Evaluations by language'),
      toolbar,
      charts,
      tableBox,
    ),
    update(r, rows) {
      run = r;
      evaluations = rows;
      render();
    },
    dispose() {
      rgBars.destroy();
      asrBars.destroy();
    },
  };
}
