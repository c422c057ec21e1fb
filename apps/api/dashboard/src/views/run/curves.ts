// The run page's live curves: training loss, the reward gap on the target
// languages, and the target metric, one line per trial. Each poll asks only
// for steps after the last one held (`since`), and a trial that was terminal
// when a fetch began is not asked for again.

import { isTrialTerminal } from '@mpo/queue/statuses';
import type { Run, Series, Trial } from '../../api.js';
import { type LineChart, lineChart } from '../../charts.js';
import { h, replace } from '../../dom.js';
import type { ViewContext } from '../../view.js';

const POINTS = 400;

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

/** The charts of a run: loss, the target reward gap, and the target metric when it is neither. */
function chartDefs(r: Run): ChartDef[] {
  const metric = r.objective.metric;
  const [objName, objLang] = metric.includes(':') ? metric.split(':', 2) : [metric, undefined];
  const mk = (key: string, name: string, title: string, y: string, lang?: string): ChartDef => ({
    key,
    name,
    ...(lang ? { lang } : {}),
    chart: lineChart({ title, x: 'step', y, id: `chart-${key}` }),
    data: new Map(),
  });
  const defs = [
    mk('loss', 'loss', 'Training loss per trial', 'loss'),
    mk('rg', 'rg/target', 'Reward gap on the target languages (training batches)', 'reward gap'),
  ];
  if (objName && !['loss', 'rg/target'].includes(objName))
    defs.push(mk('objective', objName, `Target metric: ${metric} (${r.objective.mode})`, objName, objLang));
  return defs;
}

export interface CurvesSection {
  el: HTMLElement;
  /** Fetches the steps each chart lacks and redraws it. */
  refresh(r: Run): Promise<void>;
  dispose(): void;
}

export function curvesSection(ctx: ViewContext, runId: string): CurvesSection {
  const chartsBox = h('div', { class: 'grid charts', id: 'curves' });
  let defs: ChartDef[] | undefined;
  const settled = new Set<string>();
  return {
    el: h(
      'section',
      { class: 'card', 'aria-labelledby': 'curves-title' },
      h('h2', { id: 'curves-title' }, 'Curves'),
      chartsBox,
    ),
    async refresh(r) {
      if (!defs) {
        defs = chartDefs(r);
        replace(
          chartsBox,
          defs.map((d) => d.chart.el),
        );
      }
      // Trials already terminal when this fetch starts are complete once it returns.
      const terminalNow = r.trials.filter((t) => isTrialTerminal(t.status)).map((t) => t.id);
      const open = r.trials.filter((t) => !settled.has(t.id));
      if (open.length === 0) return;
      await Promise.all(
        defs.map(async (def) => {
          const since = Math.min(...open.map((t) => lastStep(def, t.index)));
          const res = await ctx.api.metrics(runId, {
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
    },
    dispose() {
      for (const d of defs ?? []) d.chart.destroy();
    },
  };
}
