// A run: its trials as a sweep sorted by the target metric (with ASHA rungs and
// stopped trials), live loss and reward-gap curves per trial (polled with
// `since`, so each poll brings only new steps), per-language reward gap and
// attack success bars from the evaluations, and a cancel button.
import { isRunTerminal, isTrialTerminal } from '@mpo/queue/statuses';
import type { Evaluation, Run, Series, Trial } from '../api.js';
import { ApiError } from '../api.js';
import { barChart, type LineChart, lineChart } from '../charts.js';
import { badge, h, replace, table } from '../dom.js';
import { ago, dateTime, num, params, ref } from '../format.js';
import { POLL_MS, poll, type View } from '../view.js';
import { compareHref } from './compare.js';
import { GENERATION_BENCHMARKS, generationsSection } from './generations.js';
import { pickBox } from './runs.js';

const POINTS = 400;

/** Trials ordered by best metric (mode), trials without one last, then by index. */
export function sortTrials(trials: Trial[], mode: string): Trial[] {
  return [...trials].sort((a, b) => {
    if (a.bestMetric === null || b.bestMetric === null) {
      if (a.bestMetric === b.bestMetric) return a.index - b.index;
      return a.bestMetric === null ? 1 : -1;
    }
    const d = mode === 'min' ? a.bestMetric - b.bestMetric : b.bestMetric - a.bestMetric;
    return d || a.index - b.index;
  });
}

function rungCell(t: Trial, k: number, step: number) {
  if (t.stoppedAtRung !== null && k === t.stoppedAtRung && t.status === 'STOPPED')
    return h('span', { class: 'rung rung-stopped', title: t.stopReason ?? '' }, '✗ stopped');
  if (t.stoppedAtRung !== null && k > t.stoppedAtRung) return h('span', { class: 'rung rung-na' }, '—');
  if (t.currentStep >= step) return h('span', { class: 'rung rung-passed' }, '✓ reached');
  return h('span', { class: 'rung rung-pending' }, '·');
}

interface ChartDef {
  key: string;
  name: string;
  lang?: string;
  chart: LineChart;
  /** trialIndex → language ('' for none) → points */
  data: Map<number, Map<string, { steps: number[]; values: number[] }>>;
}

function merge(def: ChartDef, series: Series[]) {
  for (const s of series) {
    let byLang = def.data.get(s.trialIndex);
    if (!byLang) {
      byLang = new Map();
      def.data.set(s.trialIndex, byLang);
    }
    const key = s.language ?? '';
    let cur = byLang.get(key);
    if (!cur) {
      cur = { steps: [], values: [] };
      byLang.set(key, cur);
    }
    const last = cur.steps.length ? cur.steps[cur.steps.length - 1]! : -1;
    s.steps.forEach((step, i) => {
      if (step > last) {
        cur.steps.push(step);
        cur.values.push(s.values[i]!);
      }
    });
  }
}

const lastStep = (def: ChartDef, trialIndex: number) => {
  let last = -1;
  for (const s of def.data.get(trialIndex)?.values() ?? [])
    if (s.steps.length) last = Math.max(last, s.steps[s.steps.length - 1]!);
  return last;
};

/** One curve from a metric's series: a per-language metric is averaged over the languages present at each step. */
export function meanCurve(byLang: { steps: number[]; values: number[] }[]): { x: number; y: number }[] {
  if (byLang.length === 1) return byLang[0]!.steps.map((x, i) => ({ x, y: byLang[0]!.values[i]! }));
  const acc = new Map<number, { sum: number; n: number }>();
  for (const s of byLang)
    s.steps.forEach((x, i) => {
      const a = acc.get(x) ?? { sum: 0, n: 0 };
      a.sum += s.values[i]!;
      a.n += 1;
      acc.set(x, a);
    });
  return [...acc.entries()]
    .filter(([, a]) => a.n === byLang.length)
    .sort((a, b) => a[0] - b[0])
    .map(([x, a]) => ({ x, y: a.sum / a.n }));
}

/** One line per trial. */
function lines(def: ChartDef, trials: Trial[]) {
  return trials
    .filter((t) => def.data.has(t.index))
    .map((t) => ({
      label: `trial ${t.index}`,
      points: meanCurve([...def.data.get(t.index)!.values()]),
      colorIndex: t.index,
    }));
}

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

export const runView =
  (id: string, query = new URLSearchParams()): View =>
  (ctx) => {
    ctx.title('Run');
    const heading = h('h1', { tabindex: '-1', id: 'run-title' }, 'Run');
    const statusEl = h('span', { id: 'run-status' });
    const cancelBox = h('div', { class: 'cancel-box' });
    const meta = h('dl', { class: 'meta', id: 'run-meta' });
    const overall = h('div', { class: 'overall', id: 'run-progress' });
    const sweep = h('div', { id: 'sweep' });
    const sweepTitle = h('h2', { id: 'sweep-title' }, 'Sweep');
    // Trials ticked in the sweep table open side by side in the comparison page (kept across polls).
    const picked = new Set<string>();
    const compareTrials = h(
      'button',
      { type: 'button', id: 'compare-trials', disabled: true },
      'Compare selected trials',
    );
    const syncCompare = () => {
      compareTrials.disabled = picked.size === 0;
    };
    compareTrials.addEventListener('click', () => {
      location.hash = compareHref(
        [...picked]
          .map(Number)
          .sort((a, b) => a - b)
          .map((trial) => ({ runId: id, trial })),
      );
    });
    const chartsBox = h('div', { class: 'grid charts', id: 'curves' });
    const evalSelect = h('select', { id: 'eval-trial' });
    const evalToolbar = h(
      'div',
      { class: 'toolbar', hidden: true },
      h('label', { for: 'eval-trial' }, 'Trial '),
      evalSelect,
    );
    const evalCharts = h('div', { class: 'grid charts', id: 'eval-charts' });
    const evalTable = h('div', { id: 'eval-table' });
    const evalSection = h(
      'section',
      { class: 'card', 'aria-labelledby': 'eval-title', id: 'evaluations' },
      h('h2', { id: 'eval-title' }, 'Evaluations by language'),
      evalToolbar,
      evalCharts,
      evalTable,
    );
    const generations = generationsSection(ctx, id, query);
    replace(
      ctx.main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, '← Runs')),
      h('div', { class: 'title-row' }, heading, statusEl, cancelBox),
      meta,
      overall,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'sweep-title' },
        sweepTitle,
        h('div', { class: 'toolbar' }, compareTrials),
        sweep,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'curves-title' },
        h('h2', { id: 'curves-title' }, 'Curves'),
        chartsBox,
      ),
      evalSection,
      generations.el,
    );
    heading.focus();

    let run: Run | undefined;
    let defs: ChartDef[] | undefined;
    const settled = new Set<string>();
    let evaluations: Evaluation[] = [];
    let evalChoice: string | undefined;
    let evalFetchedAfterDone = false;
    let cancelling = false;
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
    replace(evalCharts, rgBars.el, asrBars.el);
    evalSelect.addEventListener('change', () => {
      evalChoice = evalSelect.value;
      renderEvaluations();
    });

    function setupCharts(r: Run) {
      const metric = r.objective.metric;
      const [objName, objLang] = metric.includes(':') ? metric.split(':', 2) : [metric, undefined];
      const mk = (key: string, name: string, title: string, y: string, lang?: string): ChartDef => ({
        key,
        name,
        ...(lang ? { lang } : {}),
        chart: lineChart({ title, x: 'step', y, id: `chart-${key}` }),
        data: new Map(),
      });
      defs = [
        mk('loss', 'loss', 'Training loss per trial', 'loss'),
        mk('rg', 'rg/target', 'Reward gap on the target languages (training batches)', 'reward gap'),
      ];
      if (objName && !['loss', 'rg/target'].includes(objName))
        defs.push(
          mk('objective', objName, `Target metric: ${metric} (${r.objective.mode})`, objName, objLang),
        );
      replace(
        chartsBox,
        defs.map((d) => d.chart.el),
      );
    }

    function renderRun(r: Run) {
      ctx.title(r.name);
      heading.textContent = r.name;
      replace(statusEl, badge(r.status));
      const spec = r.spec;
      const search = spec.search ?? {};
      const done = r.trials.filter((t) => isTrialTerminal(t.status)).length;
      replace(
        meta,
        [
          ['Run id', h('code', {}, r.id)],
          ['Method', spec.method ?? '—'],
          ['Model', ref(spec.model)],
          ['Data', (spec.data ?? []).map(ref).join(', ') || '—'],
          [
            'Languages',
            `${spec.dominantLanguage ?? '?'} → ${(spec.targetLanguages ?? []).join(', ') || '—'}`,
          ],
          [
            'Search',
            `${search.strategy ?? '?'}, ${r.trialCount} trials${search.asha ? `, ASHA rungs at steps ${r.rungs.join(', ')} (η=${search.asha.reductionFactor ?? 3})` : ''}`,
          ],
          [
            'Target metric',
            `${r.objective.metric} (${r.objective.mode === 'min' ? 'lower' : 'higher'} is better)`,
          ],
          ['Best', r.best ? `trial ${r.best.trialIndex}: ${num(r.best.value)}` : '—'],
          ['Created', h('time', { datetime: r.createdAt, title: dateTime(r.createdAt) }, ago(r.createdAt))],
          ['Finished', r.finishedAt ? dateTime(r.finishedAt) : '—'],
        ].map(([k, v]) => h('div', {}, h('dt', {}, k as string), h('dd', {}, v as Node | string))),
      );

      // Overall progress: steps done of steps planned, trials by status.
      const planned = r.trials.reduce((a, t) => a + (t.totalSteps ?? 0), 0);
      const stepsDone = r.trials.reduce(
        (a, t) => a + (isTrialTerminal(t.status) ? (t.totalSteps ?? t.currentStep) : t.currentStep),
        0,
      );
      const byStatus = new Map<string, number>();
      for (const t of r.trials) byStatus.set(t.status, (byStatus.get(t.status) ?? 0) + 1);
      replace(
        overall,
        h('label', { for: 'overall-progress' }, 'Sweep progress '),
        h('progress', { id: 'overall-progress', max: Math.max(1, planned), value: stepsDone }),
        h(
          'span',
          { class: 'progress-text' },
          ` ${done} of ${r.trialCount} trials finished · ${[...byStatus.entries()].map(([s, n]) => `${n} ${s.toLowerCase()}`).join(', ')}`,
        ),
      );

      // Cancel.
      if (!isRunTerminal(r.status) && !r.cancelRequestedAt) {
        if (!cancelBox.querySelector('button')) {
          const button = h('button', { type: 'button', class: 'danger', id: 'cancel-run' }, 'Cancel run');
          button.addEventListener('click', async () => {
            if (
              !window.confirm(
                `Cancel run “${r.name}”? Trials not started are cancelled; running ones stop at their next step (checkpoints are kept).`,
              )
            )
              return;
            button.disabled = true;
            cancelling = true;
            try {
              const res = await ctx.api.cancel(id);
              ctx.status(
                `Cancel requested: ${res.cancelled} trials cancelled, ${res.stopping} stopping at their next step.`,
              );
            } catch (err) {
              button.disabled = false;
              if (!(err instanceof ApiError && err.status === 401))
                ctx.status(`Cancel failed: ${(err as Error).message}`, 'error');
            } finally {
              cancelling = false;
            }
          });
          replace(cancelBox, button);
        }
      } else if (!cancelling) {
        replace(
          cancelBox,
          r.cancelRequestedAt && !r.finishedAt
            ? h('span', { class: 'note', id: 'cancel-note' }, `Cancel requested ${ago(r.cancelRequestedAt)}`)
            : null,
        );
      }

      // The sweep, best first by the target metric.
      const mode = r.objective.mode;
      const rungs = search.strategy === 'asha' ? r.rungs : [];
      sweepTitle.textContent = `Sweep: ${r.trialCount} trials sorted by ${r.objective.metric} (${mode === 'min' ? 'lowest' : 'highest'} first)`;
      const rows = sortTrials(r.trials, mode).map((t, rank) => {
        const total = t.totalSteps ?? 0;
        const tr = h(
          'tr',
          {
            'data-trial': t.index,
            'data-status': t.status,
            class: t.status === 'STOPPED' ? 'stopped' : undefined,
          },
          h('td', {}, pickBox(String(t.index), `trial ${t.index}`, picked, syncCompare)),
          h('td', {}, t.bestMetric === null ? '—' : String(rank + 1)),
          h('th', { scope: 'row' }, `trial ${t.index}`),
          h('td', {}, badge(t.status), t.attempt > 1 ? ` (attempt ${t.attempt})` : ''),
          h('td', { class: 'params' }, params(t.hyperparameters)),
          h(
            'td',
            { class: 'progress-cell' },
            h('progress', {
              max: Math.max(1, total),
              value: t.currentStep,
              'aria-label': `trial ${t.index} progress`,
            }),
            h('span', { class: 'step' }, ` ${t.currentStep} / ${total || '?'}`),
          ),
          h('td', { class: 'num' }, num(t.bestMetric)),
          rungs.map((step, k) => h('td', {}, rungCell(t, k, step))),
          h(
            'td',
            { class: 'note' },
            t.status === 'STOPPED'
              ? `${t.stoppedAtRung !== null ? `rung ${t.stoppedAtRung}: ` : ''}${t.stopReason ?? 'stopped'}`
              : (t.error ?? ''),
          ),
        );
        return tr;
      });
      replace(
        sweep,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'sweep' },
            h('caption', { class: 'visually-hidden' }, sweepTitle.textContent),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                [
                  'compare',
                  'rank',
                  'trial',
                  'status',
                  'hyperparameters',
                  'progress',
                  `best ${r.objective.metric}`,
                ]
                  .concat(rungs.map((s, k) => `rung ${k} (step ${s})`))
                  .concat(['stop reason / error'])
                  .map((x) => h('th', { scope: 'col' }, x)),
              ),
            ),
            h('tbody', {}, rows),
          ),
        ),
      );
    }

    async function refreshCurves(r: Run) {
      if (!defs) setupCharts(r);
      // Trials already terminal when this fetch starts are complete once it returns.
      const terminalNow = r.trials.filter((t) => isTrialTerminal(t.status)).map((t) => t.id);
      const open = r.trials.filter((t) => !settled.has(t.id));
      if (open.length === 0) return;
      await Promise.all(
        defs!.map(async (def) => {
          const since = Math.min(...open.map((t) => lastStep(def, t.index)));
          const res = await ctx.api.metrics(id, {
            name: def.name,
            ...(def.lang ? { lang: def.lang } : {}),
            since,
            points: POINTS,
          });
          merge(def, res.series);
          def.chart.update(lines(def, r.trials));
        }),
      );
      for (const t of terminalNow) settled.add(t);
    }

    function renderEvaluations() {
      const rows = latestEvaluations(evaluations);
      const withEvals = [...new Set(rows.map((e) => e.trialIndex))].sort((a, b) => a - b);
      const current = evalSelect.value;
      const options = [...(withEvals.length > 1 ? ['all'] : []), ...withEvals.map(String)];
      if (options.join() !== [...evalSelect.options].map((o) => o.value).join()) {
        replace(
          evalSelect,
          options.map((o) => h('option', { value: o }, o === 'all' ? 'all trials' : `trial ${o}`)),
        );
        const best = run?.best?.trialIndex;
        evalSelect.value =
          evalChoice && options.includes(evalChoice)
            ? evalChoice
            : withEvals.length > 1 && withEvals.length <= 4
              ? 'all'
              : best !== undefined && withEvals.includes(best)
                ? String(best)
                : (options[0] ?? current);
      }
      evalToolbar.hidden = options.length === 0;
      const choice = evalSelect.value;
      const trials = choice === 'all' ? withEvals : choice ? [Number(choice)] : [];
      const pick = (benchmark: string, metric: string) => {
        const sel = rows.filter((e) => e.benchmark === benchmark && e.metric === metric);
        const dominant = run?.spec.dominantLanguage;
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
              values: langs.map(
                (l) => sel.find((e) => e.trialIndex === ti && e.language === l)?.value ?? null,
              ),
            })),
        };
      };
      const rg = pick('reward-gap', 'rg');
      rgBars.update(rg.langs, rg.datasets);
      const asr = pick('multijail', 'asr');
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
      replace(
        evalTable,
        table(
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
                  {
                    trial: e.trialIndex,
                    benchmark: e.benchmark,
                    language: e.language === 'avg' ? '' : e.language,
                  },
                  'read',
                  `Read the generations of trial ${e.trialIndex}, ${e.benchmark}, ${e.language}`,
                )
              : '',
          ]),
          {
            empty: 'No evaluations yet: each trial is evaluated when its training ends.',
            captionHidden: true,
          },
        ),
      );
    }

    const stop = poll(
      async () => {
        let r: Run;
        try {
          r = await ctx.api.run(id);
        } catch (err) {
          if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 400)) throw err;
          ctx.title('Run not found');
          replace(
            ctx.main,
            h('h1', { tabindex: '-1' }, 'Run not found'),
            h('p', {}, `${err.message}. `, h('a', { href: '#/runs' }, 'All runs')),
          );
          return 'stop';
        }
        run = r;
        renderRun(r);
        const done = isRunTerminal(r.status);
        const wantEvals = !done || !evalFetchedAfterDone;
        const [, ev] = await Promise.all([
          refreshCurves(r),
          wantEvals ? ctx.api.evaluations(id) : Promise.resolve(undefined),
        ]);
        if (ev) {
          evaluations = ev.evaluations;
          if (done) evalFetchedAfterDone = true;
          renderEvaluations();
        }
        generations.update(r, evaluations, done);
      },
      POLL_MS,
      ctx,
    );
    return () => {
      stop();
      generations.dispose();
      for (const d of defs ?? []) d.chart.destroy();
      rgBars.destroy();
      asrBars.destroy();
    };
  };
