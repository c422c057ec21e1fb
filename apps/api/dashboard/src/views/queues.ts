// Queue health: per queue, jobs by state, throughput over the last 15 minutes,
// the oldest waiting job and recent failures with their reasons; then the
// worker agents with their device slots, busy and free.
import { JOB_STATES } from '@mpo/queue/statuses';
import type { Agent, QueueView } from '../api.js';
import { type BarChart, barChart } from '../charts.js';
import { h, replace, table } from '../dom.js';
import { ago, dateTime, duration } from '../format.js';
import { POLL_MS, poll, type View } from '../view.js';

function slotChips(agent: Agent) {
  return agent.slots.map((s) => {
    const busyIds = new Set(
      agent.running.filter((r) => r.slots.device === s.device).flatMap((r) => r.assigned ?? []),
    );
    const ids = s.ids ?? Array.from({ length: s.total }, (_, i) => String(i));
    // Without assigned ids, the first (total - free) slots are drawn busy.
    let unnamedBusy = Math.max(0, s.total - s.free - busyIds.size);
    const chips = ids.map((id) => {
      const busy = busyIds.has(id) || unnamedBusy-- > 0;
      return h('span', {
        class: `slot ${busy ? 'busy' : 'free'}`,
        title: `${s.device} ${id}: ${busy ? 'busy' : 'free'}`,
        'aria-hidden': 'true',
      });
    });
    return h(
      'div',
      { class: 'slots', 'data-device': s.device },
      h(
        'span',
        { class: 'slot-label' },
        `${s.device}: ${s.total - s.free} busy, ${s.free} free of ${s.total}`,
      ),
      h('span', { class: 'slot-chips' }, chips),
    );
  });
}

interface Card {
  el: HTMLElement;
  counts: HTMLElement;
  facts: HTMLElement;
  failures: HTMLElement;
  chart: BarChart;
}

function queueCard(name: string): Card {
  const headingId = `queue-${name}`;
  const chart = barChart({ title: `${name}: jobs finished per minute`, y: 'jobs', id: `throughput-${name}` });
  const counts = h('dl', { class: 'counts' });
  const facts = h('p', { class: 'facts' });
  const failures = h('div', { class: 'failures' });
  const el = h(
    'section',
    { class: 'card queue', 'aria-labelledby': headingId, 'data-queue': name },
    h('h2', { id: headingId }, name),
    counts,
    facts,
    chart.el,
    h('h3', {}, 'Recent failures'),
    failures,
  );
  return { el, counts, facts, failures, chart };
}

function updateCard(card: Card, q: QueueView, now: number) {
  const c = q.counts;
  replace(
    card.counts,
    JOB_STATES.map((s) =>
      h(
        'div',
        { class: `count count-${s}${(c[s] ?? 0) > 0 ? ' nonzero' : ''}`, 'data-state': s },
        h('dt', {}, s),
        h('dd', {}, String(c[s] ?? 0)),
      ),
    ),
  );
  replace(
    card.facts,
    h('span', {}, `Throughput: ${q.throughput.perMinute.toFixed(1)} jobs/min (last 5 min)`),
    h(
      'span',
      { class: 'oldest' },
      `Oldest waiting: ${q.oldestWaitingAgeMs === null ? 'none' : duration(q.oldestWaitingAgeMs)}`,
    ),
    h('span', {}, `Worker connections: ${q.workers}`),
  );
  // Newest first from the API; oldest on the left here.
  const completed = [...q.throughput.completedPerMinute].reverse();
  const failed = [...q.throughput.failedPerMinute].reverse();
  card.chart.update(
    completed.map((_, i) => (i === completed.length - 1 ? 'now' : `−${completed.length - 1 - i} min`)),
    [
      { label: 'completed', values: completed },
      { label: 'failed', values: failed },
    ],
  );
  replace(
    card.failures,
    table(
      `Recent failures on ${q.name}`,
      ['job', 'name', 'run', 'reason', 'attempts', 'failed'],
      q.recentFailures.map((f) => [
        h('code', {}, f.jobId),
        f.name,
        f.runId ? h('a', { href: `#/runs/${f.runId}` }, f.runId.slice(0, 8)) : '—',
        h('span', { class: 'reason' }, f.reason || '(no reason given)'),
        String(f.attemptsMade),
        f.failedAt
          ? h(
              'time',
              { datetime: new Date(f.failedAt).toISOString(), title: dateTime(f.failedAt) },
              ago(f.failedAt, now),
            )
          : '—',
      ]),
      { captionHidden: true, empty: 'None.' },
    ),
  );
}

export const queuesView: View = (ctx) => {
  // Long: one view; its queue cards and agent table are state shared by the render and poll closures.
  ctx.title('Queues');
  const heading = h('h1', { tabindex: '-1' }, 'Queues');
  const prefix = h('p', { class: 'subtle' });
  const grid = h('div', { class: 'grid queues', id: 'queues' });
  const agents = h('section', { class: 'card', 'aria-labelledby': 'agents-title', id: 'agents' });
  const outbox = h('section', { class: 'card', 'aria-labelledby': 'outbox-title', id: 'outbox' });
  replace(ctx.main, heading, prefix, grid, agents, outbox);
  heading.focus();
  const cards = new Map<string, Card>();

  const stop = poll(
    async () => {
      const view = await ctx.api.queues();
      prefix.textContent = `Deployment prefix “${view.prefix}”. Throughput charts: jobs finished per minute, last 15 minutes.`;
      const now = Date.now();
      for (const q of view.queues) {
        let card = cards.get(q.name);
        if (!card) {
          card = queueCard(q.name);
          cards.set(q.name, card);
          grid.append(card.el);
        }
        updateCard(card, q, now);
      }
      replace(
        agents,
        h('h2', { id: 'agents-title' }, `Worker agents (${view.agents.length})`),
        table(
          'Worker agents and their device slots',
          ['agent', 'host', 'slots', 'running', 'queues', 'last seen'],
          view.agents.map((a) => [
            h('code', {}, a.id),
            `${a.host} (pid ${a.pid}, v${a.version})`,
            h('div', {}, slotChips(a)),
            a.running.length
              ? h(
                  'ul',
                  { class: 'plain' },
                  a.running.map((r) =>
                    h(
                      'li',
                      {},
                      h('a', { href: `#/runs/${r.runId}` }, `trial ${r.trialId.slice(0, 8)}`),
                      ` on ${r.queue}, ${r.slots.count} ${r.slots.device}${r.assigned?.length ? ` [${r.assigned.join(', ')}]` : ''}, ${duration(now - r.startedAt)}`,
                    ),
                  ),
                )
              : 'idle',
            a.queues.join(', '),
            ago(a.lastSeen, now),
          ]),
          { captionHidden: true, empty: 'No worker agent is online.', class: 'agents' },
        ),
      );
      if (view.outbox) {
        const dead = view.outbox.deadLetters;
        replace(
          outbox,
          h(
            'h2',
            { id: 'outbox-title' },
            `Outbox: ${view.outbox.pending} pending, ${dead.length} dead letters`,
          ),
          table(
            'Outbox rows that failed for good and are no longer retried',
            ['run', 'kind', 'attempts', 'last error', 'dead since'],
            dead.map((d) => [
              h('a', { href: `#/runs/${d.runId}` }, d.runId.slice(0, 8)),
              d.kind,
              String(d.attempts),
              h('span', { class: 'reason' }, d.lastError ?? '(none)'),
              ago(Date.parse(d.deadAt), now),
            ]),
            { captionHidden: true, empty: 'None.' },
          ),
        );
      } else replace(outbox);
    },
    POLL_MS,
    ctx,
  );
  return () => {
    stop();
    for (const c of cards.values()) c.chart.destroy();
  };
};
