// The run page's head: name and status, the run's facts (method, model, data,
// languages, search with its ASHA rungs, target metric, best trial, times),
// the sweep's overall progress, and the cancel button.
import { isRunTerminal, isTrialTerminal } from '@mpo/queue/statuses';
import { ApiError, type Run } from '../../api.js';
import { badge, h, replace } from '../../dom.js';
import { ago, dateTime, num, ref } from '../../format.js';
import type { ViewContext } from '../../view.js';

export interface RunHead {
  heading: HTMLElement;
  /** The title row, the facts and the progress, in page order. */
  els: HTMLElement[];
  update(r: Run): void;
}

export function runHead(ctx: ViewContext, id: string): RunHead {
  const heading = h('h1', { tabindex: '-1', id: 'run-title' }, 'Run');
  const statusEl = h('span', { id: 'run-status' });
  const cancel = cancelControl(ctx, id);
  const meta = h('dl', { class: 'meta', id: 'run-meta' });
  const overall = h('div', { class: 'overall', id: 'run-progress' });
  return {
    heading,
    els: [h('div', { class: 'title-row' }, heading, statusEl, cancel.el), meta, overall],
    update(r) {
      ctx.title(r.name);
      heading.textContent = r.name;
      replace(statusEl, badge(r.status));
      replace(meta, facts(r));
      replace(overall, progress(r));
      cancel.update(r);
    },
  };
}

function facts(r: Run): HTMLElement[] {
  const spec = r.spec;
  const search = spec.search ?? {};
  return [
    ['Run id', h('code', {}, r.id)],
    ['Method', spec.method ?? '—'],
    ['Model', ref(spec.model)],
    ['Data', (spec.data ?? []).map(ref).join(', ') || '—'],
    ['Languages', `${spec.dominantLanguage ?? '?'} → ${(spec.targetLanguages ?? []).join(', ') || '—'}`],
    [
      'Search',
      `${search.strategy ?? '?'}, ${r.trialCount} trials${search.asha ? `, ASHA rungs at steps ${r.rungs.join(', ')} (η=${search.asha.reductionFactor ?? 3})` : ''}`,
    ],
    ['Target metric', `${r.objective.metric} (${r.objective.mode === 'min' ? 'lower' : 'higher'} is better)`],
    ['Best', r.best ? `trial ${r.best.trialIndex}: ${num(r.best.value)}` : '—'],
    ['Created', h('time', { datetime: r.createdAt, title: dateTime(r.createdAt) }, ago(r.createdAt))],
    ['Finished', r.finishedAt ? dateTime(r.finishedAt) : '—'],
  ].map(([k, v]) => h('div', {}, h('dt', {}, k as string), h('dd', {}, v as Node | string)));
}

/** Overall progress: steps done of steps planned, trials by status. */
function progress(r: Run): HTMLElement[] {
  const done = r.trials.filter((t) => isTrialTerminal(t.status)).length;
  const planned = r.trials.reduce((a, t) => a + (t.totalSteps ?? 0), 0);
  const stepsDone = r.trials.reduce(
    (a, t) => a + (isTrialTerminal(t.status) ? (t.totalSteps ?? t.currentStep) : t.currentStep),
    0,
  );
  const byStatus = new Map<string, number>();
  for (const t of r.trials) byStatus.set(t.status, (byStatus.get(t.status) ?? 0) + 1);
  if (r.notCreated) byStatus.set('NOT CREATED YET', r.notCreated);
  return [
    h('label', { for: 'overall-progress' }, 'Sweep progress '),
    h('progress', { id: 'overall-progress', max: Math.max(1, planned), value: stepsDone }),
    h(
      'span',
      { class: 'progress-text' },
      ` ${done} of ${r.trialCount} trials finished · ${[...byStatus.entries()].map(([s, n]) => `${n} ${s.toLowerCase()}`).join(', ')}`,
    ),
  ];
}

/** The cancel button while the run can be cancelled, then a note that a cancel was requested. */
function cancelControl(ctx: ViewContext, id: string) {
  const el = h('div', { class: 'cancel-box' });
  let cancelling = false;
  const button = (r: Run) => {
    const b = h('button', { type: 'button', class: 'danger', id: 'cancel-run' }, 'Cancel run');
    b.addEventListener('click', async () => {
      if (
        !window.confirm(
          `Cancel run “${r.name}”? Trials not started are cancelled; running ones stop at their next step (checkpoints are kept).`,
        )
      )
        return;
      b.disabled = true;
      cancelling = true;
      try {
        const res = await ctx.api.cancel(id);
        ctx.status(
          `Cancel requested: ${res.cancelled} trials cancelled, ${res.stopping} stopping at their next step.`,
        );
      } catch (err) {
        b.disabled = false;
        if (!(err instanceof ApiError && err.status === 401))
          ctx.status(`Cancel failed: ${(err as Error).message}`, 'error');
      } finally {
        cancelling = false;
      }
    });
    return b;
  };
  return {
    el,
    update(r: Run) {
      if (!isRunTerminal(r.status) && !r.cancelRequestedAt) {
        if (!el.querySelector('button')) replace(el, button(r));
      } else if (!cancelling) {
        replace(
          el,
          r.cancelRequestedAt && !r.finishedAt
            ? h('span', { class: 'note', id: 'cancel-note' }, `Cancel requested ${ago(r.cancelRequestedAt)}`)
            : null,
        );
      }
    },
  };
}
