// The run page's sweep: its trials best first by the target metric, each with
// status, hyperparameters, progress, best value, a cell per ASHA rung (the
// rungs GET /runs/:id returns) and why it stopped; ticked trials open side by
// side in the comparison page.
import type { Run, Trial } from '../../api.js';
import { badge, h, replace } from '../../dom.js';
import { num, params } from '../../format.js';
import { compareHref } from '../compare.js';
import { pickBox } from '../runs.js';

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

/** A trial's row: its box for the comparison, rank, status, hyperparameters, progress, best, rungs, why it stopped. */
function trialRow(t: Trial, rank: number, rungs: number[], pick: HTMLElement) {
  const total = t.totalSteps ?? 0;
  return h(
    'tr',
    {
      'data-trial': t.index,
      'data-status': t.status,
      class: t.status === 'STOPPED' ? 'stopped' : undefined,
    },
    h('td', {}, pick),
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
}

export interface SweepSection {
  el: HTMLElement;
  update(r: Run): void;
}

export function sweepSection(runId: string): SweepSection {
  const sweep = h('div', { id: 'sweep' });
  const title = h('h2', { id: 'sweep-title' }, 'Sweep');
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
        .map((trial) => ({ runId, trial })),
    );
  });
  return {
    el: h(
      'section',
      { class: 'card', 'aria-labelledby': 'sweep-title' },
      title,
      h('div', { class: 'toolbar' }, compareTrials),
      sweep,
    ),
    update(r) {
      // The sweep, best first by the target metric.
      const mode = r.objective.mode;
      const rungs = r.spec.search?.strategy === 'asha' ? r.rungs : [];
      title.textContent = `Sweep: ${r.trialCount} trials sorted by ${r.objective.metric} (${mode === 'min' ? 'lowest' : 'highest'} first)`;
      const columns = [
        'compare',
        'rank',
        'trial',
        'status',
        'hyperparameters',
        'progress',
        `best ${r.objective.metric}`,
      ]
        .concat(rungs.map((s, k) => `rung ${k} (step ${s})`))
        .concat(['stop reason / error']);
      replace(
        sweep,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'sweep' },
            h('caption', { class: 'visually-hidden' }, title.textContent),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                columns.map((x) => h('th', { scope: 'col' }, x)),
              ),
            ),
            h(
              'tbody',
              {},
              sortTrials(r.trials, mode).map((t, rank) =>
                trialRow(t, rank, rungs, pickBox(String(t.index), `trial ${t.index}`, picked, syncCompare)),
              ),
            ),
          ),
        ),
      );
    },
  };
}
