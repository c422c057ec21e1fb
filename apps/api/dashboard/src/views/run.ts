// A run: its facts and progress with a cancel button (run/meta.ts), its
// trials as a sweep sorted by the target metric with ASHA rungs and stopped
// trials (run/sweep.ts), live loss and reward-gap curves per trial
// (run/curves.ts), per-language reward gap and attack success bars from the
// evaluations (run/evaluations.ts), and the generations behind them; all
// refreshed by one poll of the run.

import { isRunTerminal } from '@mpo/queue/statuses';
import type { Evaluation, Run } from '../api.js';
import { ApiError } from '../api.js';
import { h, replace } from '../dom.js';
import { POLL_MS, poll, type View, type ViewContext } from '../view.js';
import { generationsSection } from './generations.js';
import { curvesSection } from './run/curves.js';
import { evaluationsSection } from './run/evaluations.js';
import { runHead } from './run/meta.js';
import { sweepSection } from './run/sweep.js';

function notFound(ctx: ViewContext, err: ApiError) {
  ctx.title('Run not found');
  replace(
    ctx.main,
    h('h1', { tabindex: '-1' }, 'Run not found'),
    h('p', {}, `${err.message}. `, h('a', { href: '#/runs' }, 'All runs')),
  );
}

export const runView =
  (id: string, query = new URLSearchParams()): View =>
  (ctx) => {
    ctx.title('Run');
    const head = runHead(ctx, id);
    const sweep = sweepSection(id);
    const curves = curvesSection(ctx, id);
    const generations = generationsSection(ctx, id, query);
    const evals = evaluationsSection(generations);
    replace(
      ctx.main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, '← Runs')),
      ...head.els,
      sweep.el,
      curves.el,
      evals.el,
      generations.el,
    );
    head.heading.focus();

    let evaluations: Evaluation[] = [];
    // After the run ends, the evaluations are fetched once more and then left alone.
    let evalFetchedAfterDone = false;
    const stop = poll(
      async () => {
        let r: Run;
        try {
          r = await ctx.api.run(id);
        } catch (err) {
          if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 400)) throw err;
          notFound(ctx, err);
          return 'stop';
        }
        head.update(r);
        sweep.update(r);
        const done = isRunTerminal(r.status);
        const wantEvals = !done || !evalFetchedAfterDone;
        const [, ev] = await Promise.all([
          curves.refresh(r),
          wantEvals ? ctx.api.evaluations(id) : Promise.resolve(undefined),
        ]);
        if (ev) {
          evaluations = ev.evaluations;
          if (done) evalFetchedAfterDone = true;
          evals.update(r, evaluations);
        }
        generations.update(r, evaluations, done);
      },
      POLL_MS,
      ctx,
    );
    return () => {
      stop();
      generations.dispose();
      curves.dispose();
      evals.dispose();
    };
  };
