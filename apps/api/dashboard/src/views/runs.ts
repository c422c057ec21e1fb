// Runs, newest first: status, trials, when; a status filter and pages of 25;
// runs ticked here open side by side in the comparison page.
import { RUN_STATUSES } from '@mpo/queue/statuses';
import { badge, h, replace, table } from '../dom.js';
import { ago, dateTime, duration } from '../format.js';
import { POLL_MS, poll, type View } from '../view.js';
import { compareHref } from './compare.js';

const STATUSES = ['', ...RUN_STATUSES];
const PAGE = 25;

/** A checkbox that adds `key` to (or removes it from) `selected`. */
export function pickBox(key: string, name: string, selected: Set<string>, changed: () => void) {
  const box = h('input', {
    type: 'checkbox',
    class: 'pick',
    value: key,
    checked: selected.has(key),
    'aria-label': `Compare ${name}`,
  });
  box.addEventListener('change', () => {
    if (box.checked) selected.add(key);
    else selected.delete(key);
    changed();
  });
  return box;
}

const when = (t: string | null, now: number) =>
  t ? h('time', { datetime: t, title: dateTime(t) }, ago(t, now)) : '—';

export const runsView =
  (query: URLSearchParams): View =>
  (ctx) => {
    // Long: one view; its filter, page and selection are state shared by the render and poll closures.
    ctx.title('Runs');
    const status = STATUSES.includes(query.get('status') ?? '') ? (query.get('status') ?? '') : '';
    const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
    const href = (s: string, o: number) => {
      const p = new URLSearchParams();
      if (s) p.set('status', s);
      if (o) p.set('offset', String(o));
      const qs = p.toString();
      return `#/runs${qs ? `?${qs}` : ''}`;
    };

    const heading = h('h1', { tabindex: '-1' }, 'Runs');
    const select = h(
      'select',
      { id: 'status-filter' },
      STATUSES.map((s) => h('option', { value: s, selected: s === status }, s ? s.toLowerCase() : 'any')),
    );
    select.addEventListener('change', () => {
      location.hash = href(select.value, 0);
    });
    const list = h('div', { id: 'runs' });
    // Kept across polls (the table is redrawn each time).
    const selected = new Set<string>();
    const compareButton = h('button', { type: 'button', id: 'compare-runs', disabled: true }, 'Compare');
    const syncCompare = () => {
      compareButton.disabled = selected.size === 0;
      compareButton.textContent = selected.size ? `Compare ${selected.size} selected` : 'Compare';
    };
    compareButton.addEventListener('click', () => {
      location.hash = compareHref([...selected].map((runId) => ({ runId, trial: null })));
    });
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of runs' });
    replace(
      ctx.main,
      heading,
      h('div', { class: 'toolbar' }, h('label', { for: 'status-filter' }, 'Status '), select, compareButton),
      list,
      pager,
    );
    heading.focus();

    return poll(
      async () => {
        const page = await ctx.api.runs({ ...(status ? { status } : {}), limit: PAGE, offset });
        const now = Date.now();
        replace(
          list,
          table(
            `Runs${status ? ` with status ${status.toLowerCase()}` : ''}: ${page.total} in all`,
            ['compare', 'run', 'status', 'trials', 'created', 'started', 'finished', 'duration'],
            page.items.map((r) => [
              pickBox(r.id, r.name, selected, syncCompare),
              h('a', { href: `#/runs/${r.id}`, class: 'run-link' }, r.name),
              h('span', {}, badge(r.status), r.cancelRequestedAt && !r.finishedAt ? ' cancelling' : ''),
              String(r.trialCount),
              when(r.createdAt, now),
              when(r.startedAt, now),
              when(r.finishedAt, now),
              r.startedAt
                ? duration(new Date(r.finishedAt ?? now).getTime() - new Date(r.startedAt).getTime())
                : '—',
            ]),
            {
              empty: status ? `No ${status.toLowerCase()} runs.` : 'No runs yet. Submit one with POST /runs.',
            },
          ),
        );
        const last = Math.min(page.total, offset + page.items.length);
        replace(
          pager,
          offset > 0 ? h('a', { href: href(status, Math.max(0, offset - PAGE)) }, '← Newer') : null,
          h('span', {}, page.total ? `${offset + 1}–${last} of ${page.total}` : ''),
          last < page.total ? h('a', { href: href(status, offset + PAGE) }, 'Older →') : null,
        );
      },
      POLL_MS * 2,
      ctx,
    );
  };
