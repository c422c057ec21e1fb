// GET /runs/:id/metrics/rows: every stored row of one series, in pages (keyset
// on the step), for exports (`mpo runs metrics --format csv|jsonl|parquet`),
// where GET /runs/:id/metrics would downsample a long series for charts.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { isUuid } from '@mpo/db';
import { Type } from '@sinclair/typebox';
import { HttpError } from '../../errors.js';
import { ownerFilter } from '../../plugins/auth.js';
import { DateTime, errorResponses, Uuid } from '../common.js';

/** Rows per page at most: ~0.5 MB of JSON. */
export const MAX_ROWS_PAGE = 10_000;

/** A trial of a run named by its id or its index (404 when the run has no such trial). */
export function findTrial<T extends { id: string; index: number }>(
  trials: readonly T[],
  trial: string,
  runId: string,
): T {
  const t = /^\d+$/.test(trial)
    ? trials.find((x) => x.index === Number(trial))
    : isUuid(trial)
      ? trials.find((x) => x.id === trial.toLowerCase())
      : undefined;
  if (!t) throw new HttpError(404, `trial ${trial} not found in run ${runId}`);
  return t;
}

const rowsSchema = {
  tags: ['runs'],
  summary: 'Every stored row of one metric series, paged by step',
  description:
    'The rows of one series (trial, metric name, language) in step order, at most `limit` per page. `next` is the `since` of the following page, null on the last one. Without `lang` the series without a language is read.',
  params: Type.Object({ id: Uuid }),
  querystring: Type.Object(
    {
      trial: Type.String({ description: 'trial id, or trial index' }),
      name: Type.String({ minLength: 1, maxLength: 200 }),
      lang: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
      since: Type.Integer({ minimum: -1, default: -1, description: 'only steps greater than this' }),
      limit: Type.Integer({ minimum: 1, maximum: MAX_ROWS_PAGE, default: 5_000 }),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      rows: Type.Array(Type.Object({ step: Type.Integer(), value: Type.Number(), time: DateTime })),
      next: Type.Union([Type.Integer(), Type.Null()]),
    }),
    ...errorResponses,
  },
};

const rowsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/runs/:id/metrics/rows', { schema: rowsSchema }, async (req) => {
    const { trial, name, lang, since, limit } = req.query;
    const trials = await app.db.runs.trialIds(req.params.id, { ownerTokenId: ownerFilter(req) });
    const t = findTrial(trials, trial, req.params.id);
    const rows = await app.db.metrics.series(t.id, name, {
      language: lang ?? null,
      sinceStep: since,
      limit,
    });
    return {
      rows: rows.map((r) => ({ step: r.step, value: r.value, time: r.time })),
      next: rows.length === limit ? rows[rows.length - 1]!.step : null,
    };
  });
};

export default rowsRoutes;
