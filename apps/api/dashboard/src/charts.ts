// Charts on Chart.js (tree-shaken: only the pieces used here are bundled).
// Each chart is a <canvas role="img"> with an aria-label that says what it
// shows and its latest values, so the numbers are readable without the
// picture; the container carries data-points (points drawn) for tests.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';
import { h } from './dom.js';
import { num } from './format.js';

Chart.register(
  LineController,
  LineElement,
  PointElement,
  LinearScale,
  CategoryScale,
  BarController,
  BarElement,
  Legend,
  Tooltip,
);
Chart.defaults.animation = false;
Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
Chart.defaults.color = '#1b1f24';

// Okabe–Ito: distinguishable with the common colour-vision deficiencies; dashes tell lines apart too.
const COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#8c564b'];
const DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]];
export const color = (i: number) => COLORS[i % COLORS.length]!;

export interface LineSeries {
  label: string;
  points: { x: number; y: number }[];
  /** Palette slot (default: the series' position); the trial index keeps a trial's colour across charts. */
  colorIndex?: number;
}

export interface ChartHandle {
  el: HTMLElement;
  destroy(): void;
}

export interface LineChart extends ChartHandle {
  update(series: LineSeries[]): void;
}

/** The figure every chart sits in: caption, canvas (described for screen readers) and the empty-state note. */
function chartFrame(title: string, id: string | undefined): { canvas: HTMLCanvasElement; el: HTMLElement } {
  const canvas = h('canvas', { role: 'img', 'aria-label': `${title}: no data yet` }, 'No data yet.');
  const el = h(
    'figure',
    { class: 'chart', id, 'data-points': 0 },
    h('figcaption', {}, title),
    h(
      'div',
      { class: 'chart-canvas' },
      canvas,
      h('p', { class: 'chart-empty', 'aria-hidden': 'true' }, 'No data yet'),
    ),
  );
  return { canvas, el };
}

export function lineChart(opts: { title: string; x: string; y: string; id?: string }): LineChart {
  const { canvas, el } = chartFrame(opts.title, opts.id);
  const chart = new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: 'nearest', intersect: false },
      scales: {
        x: { type: 'linear', title: { display: true, text: opts.x }, ticks: { precision: 0 } },
        y: { type: 'linear', title: { display: true, text: opts.y } },
      },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 18 } } },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0 } },
    },
  });
  return {
    el,
    update(series) {
      chart.data.datasets = series.map((s, i) => ({
        label: s.label,
        data: s.points,
        borderColor: color(s.colorIndex ?? i),
        backgroundColor: color(s.colorIndex ?? i),
        borderDash: DASHES[Math.floor((s.colorIndex ?? i) / COLORS.length) % DASHES.length] ?? [],
        pointRadius: s.points.length === 1 ? 3 : 0,
      }));
      chart.update('none');
      const total = series.reduce((a, s) => a + s.points.length, 0);
      el.dataset.points = String(total);
      const latest = series
        .filter((s) => s.points.length > 0)
        .map((s) => {
          const p = s.points[s.points.length - 1]!;
          return `${s.label} ${num(p.y)} at step ${p.x}`;
        });
      canvas.setAttribute(
        'aria-label',
        latest.length ? `${opts.title}. Latest: ${latest.join('; ')}` : `${opts.title}: no data yet`,
      );
    },
    destroy: () => chart.destroy(),
  };
}

export interface BarChart extends ChartHandle {
  update(
    labels: string[],
    datasets: { label: string; values: (number | null)[]; colorIndex?: number }[],
  ): void;
}

export function barChart(opts: { title: string; y: string; id?: string; yMax?: number }): BarChart {
  const { canvas, el } = chartFrame(opts.title, opts.id);
  const chart = new Chart<'bar', (number | null)[], string>(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: { type: 'category' },
        y: {
          type: 'linear',
          title: { display: true, text: opts.y },
          ...(opts.yMax ? { max: opts.yMax } : {}),
        },
      },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 18 } } },
    },
  });
  return {
    el,
    update(labels, datasets) {
      chart.data.labels = labels;
      chart.data.datasets = datasets.map((d, i) => ({
        label: d.label,
        data: d.values,
        backgroundColor: color(d.colorIndex ?? i),
      }));
      chart.update('none');
      el.dataset.points = String(datasets.reduce((a, d) => a + d.values.filter((v) => v !== null).length, 0));
      canvas.setAttribute(
        'aria-label',
        datasets.length
          ? `${opts.title}. ${datasets
              .map((d) => `${d.label}: ${labels.map((l, i) => `${l} ${num(d.values[i])}`).join(', ')}`)
              .join('; ')}`
          : `${opts.title}: no data yet`,
      );
    },
    destroy: () => chart.destroy(),
  };
}
