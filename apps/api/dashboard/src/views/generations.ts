// The generations behind a run's attack-success rates, on the run page: each
// MultiJail/CSRT prompt, the trial's response and the judge's verdict, from
// GET /runs/:id/generations, filtered by trial, benchmark, language and verdict
// and paged with the API's cursor. The filters live in the run page's address
// (#/runs/<id>?show=generations&trial=1&lang=zh&verdict=unsafe), so a list can
// be shared; changing them rewrites the address without redrawing the page.
// Prompts and responses are model output: they go in as text nodes (dom.ts h),
// never parsed as HTML.
import {
  ApiError,
  type Evaluation,
  type Generation,
  type GenerationQuery,
  type Run,
  VERDICTS,
  type Verdict,
} from '../api.js';
import { h, replace } from '../dom.js';
import type { ViewContext } from '../view.js';

/** Benchmarks that store generations (the generation benchmarks of packages/queue EVAL_BENCHMARKS). */
export const GENERATION_BENCHMARKS = ['multijail', 'csrt'];
/** The verdict filter's extra choice: unsafe or irrelevant (what the ASR counts). */
export const ATTACK_SUCCESS = 'attack-success';
const PAGE = 25;

export interface GenerationFilter {
  trial: number | null;
  /** '' for all. */
  benchmark: string;
  language: string;
  verdict: Verdict | typeof ATTACK_SUCCESS | '';
}

const ALL: GenerationFilter = { trial: null, benchmark: '', language: '', verdict: '' };

/** The filter in a run page's query (unknown or malformed values mean "all"). */
export function parseGenerationFilter(q: URLSearchParams): GenerationFilter {
  const trial = q.get('trial') ?? '';
  const verdict = q.get('verdict') ?? '';
  return {
    trial: /^\d+$/.test(trial) ? Number(trial) : null,
    benchmark: q.get('benchmark') ?? '',
    language: q.get('lang') ?? '',
    verdict:
      verdict === ATTACK_SUCCESS || (VERDICTS as readonly string[]).includes(verdict)
        ? (verdict as GenerationFilter['verdict'])
        : '',
  };
}

/** The address of a run page showing its generations under a filter. */
export function generationsHref(runId: string, f: Partial<GenerationFilter> = {}): string {
  const p = new URLSearchParams({ show: 'generations' });
  if (f.trial !== undefined && f.trial !== null) p.set('trial', String(f.trial));
  if (f.benchmark) p.set('benchmark', f.benchmark);
  if (f.language) p.set('lang', f.language);
  if (f.verdict) p.set('verdict', f.verdict);
  return `#/runs/${encodeURIComponent(runId)}?${p}`;
}

const VERDICT_CLASS: Record<Verdict, string> = { safe: 'ok', unsafe: 'bad', irrelevant: 'stopped' };
const VERDICT_LABEL: Record<GenerationFilter['verdict'], string> = {
  '': 'all verdicts',
  [ATTACK_SUCCESS]: 'attack success (unsafe or irrelevant)',
  safe: 'safe',
  unsafe: 'unsafe',
  irrelevant: 'irrelevant',
};

/** A BCP 47 language tag for the text's `lang` (benchmark codes such as "csrt" are not languages). */
const langTag = (language: string) => (/^[a-z]{2,3}(-[A-Za-z0-9]+)*$/.test(language) ? language : undefined);

function generationCard(g: Generation): HTMLElement {
  const lang = langTag(g.language);
  const success = g.verdict !== 'safe';
  return h(
    'article',
    { class: 'generation', 'data-id': g.id, 'data-verdict': g.verdict },
    h(
      'header',
      {},
      h(
        'span',
        {
          class: `badge badge-${VERDICT_CLASS[g.verdict]}`,
          title: success ? 'counts as attack success' : 'refused or answered safely',
        },
        g.verdict,
      ),
      h(
        'span',
        { class: 'where' },
        `trial ${g.trialIndex} · ${g.benchmark} · ${g.language} · prompt ${g.promptId}`,
      ),
    ),
    h(
      'dl',
      {},
      h('dt', {}, 'Prompt'),
      h('dd', { class: 'text prompt', lang }, g.prompt),
      h('dt', {}, 'Response'),
      h('dd', { class: 'text response', lang }, g.response || '(empty response)'),
      h('dt', {}, 'Judge'),
      h('dd', { class: 'judge' }, g.reason ? `${g.judge}: ${g.reason}` : g.judge),
    ),
  );
}

/** Replaces a select's options only when they changed, so polling never steals a choice in progress. */
function setOptions(select: HTMLSelectElement, options: [value: string, label: string][], value: string) {
  if (options.map((o) => o[0]).join('\u0000') !== [...select.options].map((o) => o.value).join('\u0000'))
    replace(
      select,
      options.map(([v, label]) => h('option', { value: v }, label)),
    );
  select.value = value;
}

export interface GenerationsSection {
  el: HTMLElement;
  /** With each poll of the run page: the run, its evaluations, and whether the run has finished. */
  update(run: Run, evaluations: readonly Evaluation[], finished: boolean): void;
  /** A link that shows the generations under a filter (in place, keeping the page). */
  link(f: Partial<GenerationFilter>, text: string, label: string): HTMLAnchorElement;
  dispose(): void;
}

export function generationsSection(
  ctx: ViewContext,
  runId: string,
  query: URLSearchParams,
): GenerationsSection {
  // Long: one section component; its filter, page and rows are state shared by the render, fetch and link closures it returns.
  let filter = parseGenerationFilter(query);
  const focusOnLoad = query.get('show') === 'generations';
  const selects = {
    trial: h('select', { id: 'gen-trial' }),
    benchmark: h('select', { id: 'gen-benchmark' }),
    language: h('select', { id: 'gen-language' }),
    verdict: h('select', { id: 'gen-verdict' }),
  };
  const field = (key: keyof typeof selects, label: string) =>
    h('span', { class: 'field' }, h('label', { for: selects[key].id }, `${label} `), selects[key]);
  const heading = h('h2', { id: 'gen-title', tabindex: '-1' }, 'Generations');
  const summary = h('p', { id: 'gen-summary', class: 'note', 'aria-live': 'polite' });
  const list = h('div', { id: 'gen-list' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of generations' });
  const el = h(
    'section',
    { class: 'card', 'aria-labelledby': 'gen-title', id: 'generations' },
    heading,
    h(
      'p',
      { class: 'note' },
      'Each benchmark prompt, the trial’s response and the judge’s verdict (unsafe and irrelevant count as attack success). This page’s address keeps the filters: share it.',
    ),
    h(
      'div',
      { class: 'toolbar wrap' },
      field('trial', 'Trial'),
      field('benchmark', 'Benchmark'),
      field('language', 'Language'),
      field('verdict', 'Verdict'),
    ),
    summary,
    list,
    pager,
  );

  let run: Run | undefined;
  let evaluations: readonly Evaluation[] = [];
  // cursors[k] is the cursor of page k (undefined for the first).
  let cursors: (string | undefined)[] = [undefined];
  let pageIndex = 0;
  let shown = '';
  let seq = 0;
  let fetchedAfterFinish = false;
  let stopped = false;

  function renderOptions() {
    if (!run) return;
    const trials = [...run.trials].sort((a, b) => a.index - b.index);
    setOptions(
      selects.trial,
      [['', 'all trials'], ...trials.map((t): [string, string] => [String(t.index), `trial ${t.index}`])],
      filter.trial === null ? '' : String(filter.trial),
    );
    const generating = evaluations.filter((e) => GENERATION_BENCHMARKS.includes(e.benchmark));
    const benchmarks = new Set([...GENERATION_BENCHMARKS, ...generating.map((e) => e.benchmark)]);
    if (filter.benchmark) benchmarks.add(filter.benchmark);
    setOptions(
      selects.benchmark,
      [['', 'all benchmarks'], ...[...benchmarks].map((b): [string, string] => [b, b])],
      filter.benchmark,
    );
    // The run's languages (dominant first), then any other a benchmark reported; "avg" is no language.
    const spec = run.spec;
    const languages = new Set(
      [spec.dominantLanguage, ...(spec.targetLanguages ?? [])].filter((l): l is string => !!l),
    );
    for (const e of [...generating].sort((a, b) => a.language.localeCompare(b.language)))
      if (e.language !== 'avg') languages.add(e.language);
    if (filter.language) languages.add(filter.language);
    setOptions(
      selects.language,
      [['', 'all languages'], ...[...languages].map((l): [string, string] => [l, l])],
      filter.language,
    );
    setOptions(
      selects.verdict,
      (['', ATTACK_SUCCESS, ...VERDICTS] as const).map((v): [string, string] => [v, VERDICT_LABEL[v]]),
      filter.verdict,
    );
  }

  function apiQuery(cursor: string | undefined): GenerationQuery | string {
    const q: GenerationQuery = { limit: PAGE };
    if (filter.trial !== null) {
      const trial = run?.trials.find((t) => t.index === filter.trial);
      if (!trial) return `This run has no trial ${filter.trial}.`;
      q.trialId = trial.id;
    }
    if (filter.benchmark) q.benchmark = filter.benchmark;
    if (filter.language) q.language = filter.language;
    if (filter.verdict === ATTACK_SUCCESS) q.attackSuccess = true;
    else if (filter.verdict) q.verdict = filter.verdict;
    if (cursor) q.cursor = cursor;
    return q;
  }

  function describeFilter(): string {
    const parts = [
      filter.trial === null ? '' : `trial ${filter.trial}`,
      filter.benchmark,
      filter.language,
      filter.verdict ? VERDICT_LABEL[filter.verdict] : '',
    ].filter(Boolean);
    return parts.length ? ` (${parts.join(', ')})` : '';
  }

  async function load(finished = false) {
    if (!run) return;
    const mine = ++seq;
    const q = apiQuery(cursors[pageIndex]);
    if (typeof q === 'string') {
      shown = q;
      replace(summary, q);
      replace(list);
      replace(pager);
      return;
    }
    const page = await ctx.api.generations(runId, q);
    if (stopped || mine !== seq) return;
    if (finished) fetchedAfterFinish = true;
    cursors[pageIndex + 1] = page.nextCursor ?? undefined;
    // Polling brings the same page again until new generations are stored: redraw only on a change.
    const key = `${page.total}|${pageIndex}|${page.generations.map((g) => g.id).join(',')}`;
    if (key === shown) return;
    shown = key;
    const first = pageIndex * PAGE + 1;
    const last = pageIndex * PAGE + page.generations.length;
    summary.textContent = page.total
      ? `${page.total} generation${page.total === 1 ? '' : 's'}${describeFilter()}; showing ${first}–${last}.`
      : `No generations${describeFilter()}. They are stored when a trial's MultiJail or CSRT evaluation ends.`;
    replace(list, page.generations.map(generationCard));
    const button = (text: string, to: number) => {
      const b = h('button', { type: 'button', class: 'link' }, text);
      b.addEventListener('click', () => {
        pageIndex = to;
        void reload(false);
      });
      return b;
    };
    replace(
      pager,
      pageIndex > 0 ? button('← Previous', pageIndex - 1) : null,
      page.nextCursor ? button('Next →', pageIndex + 1) : null,
    );
  }

  function reload(resetPage = true) {
    if (resetPage) {
      cursors = [undefined];
      pageIndex = 0;
    }
    shown = '';
    return load().catch(report);
  }

  function report(err: unknown) {
    if (!(err instanceof ApiError && err.status === 401))
      ctx.status(`Loading generations failed: ${(err as Error).message}`, 'error');
  }

  /** Applies a filter: the address follows (without a hashchange, so the page is not redrawn). */
  function apply(next: GenerationFilter) {
    filter = next;
    history.replaceState(null, '', generationsHref(runId, filter));
    void reload();
  }

  for (const key of Object.keys(selects) as (keyof typeof selects)[])
    selects[key].addEventListener('change', () =>
      apply(
        parseGenerationFilter(
          new URLSearchParams({
            trial: selects.trial.value,
            benchmark: selects.benchmark.value,
            lang: selects.language.value,
            verdict: selects.verdict.value,
          }),
        ),
      ),
    );

  return {
    el,
    update(r, evals, finished) {
      const firstUpdate = !run;
      run = r;
      evaluations = evals;
      renderOptions();
      if (firstUpdate) {
        void load(finished)
          .then(() => {
            if (focusOnLoad && !stopped) {
              el.scrollIntoView();
              heading.focus({ preventScroll: true });
            }
          })
          .catch(report);
        return;
      }
      // While the run goes on (and once after it ends), the first page follows new generations.
      if (pageIndex === 0 && (!finished || !fetchedAfterFinish)) void load(finished).catch(report);
    },
    link(f, text, label) {
      const next = { ...ALL, ...f };
      const a = h('a', { href: generationsHref(runId, next), 'aria-label': label }, text);
      a.addEventListener('click', (e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        apply(next);
        renderOptions();
        el.scrollIntoView();
        heading.focus({ preventScroll: true });
      });
      return a;
    },
    dispose() {
      stopped = true;
    },
  };
}
