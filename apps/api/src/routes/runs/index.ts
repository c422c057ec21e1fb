// Runs: launch a sweep, list and read runs, read their curves, cancel them.

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type Json, type NewTrial, OUTBOX_KINDS } from '@mpo/db';
import {
  INITIAL_TRIALS,
  JOB_TREE_BUDGET,
  jobTreeSize,
  ProblemsError,
  type RunSpec,
  runRungs,
  type SpecContext,
  type TrialPlan,
  trialRows,
  validateRunSpec,
} from '@mpo/queue';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError, UnavailableError } from '../../errors.js';
import { ownerFilter } from '../../plugins/auth.js';
import type { CancelPayload, FlowPayload } from '../../plugins/outbox.js';
import { checkTrialQuotas, runRankSteps } from '../../plugins/quotas.js';
import rowsRoutes, { findTrial } from './rows.js';
import {
  cancelRunSchema,
  createRunSchema,
  getEvaluationsSchema,
  getGenerationsSchema,
  getMetricsSchema,
  getRunSchema,
  listRunsSchema,
} from './schemas.js';
import { ignoredFields, llamaFactoryHook, registerYamlBodies, withPositions } from './spec-text.js';

export interface RunsRoutesOptions {
  spec: SpecContext;
}

/** JSON with sorted keys: a stored (JSONB, keys reordered) spec compares equal to a fresh one. */
function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** Refuses (400) a spec whose job tree would exceed its storage budget, before anything is stored. */
function checkJobTree(spec: RunSpec, trials: TrialPlan[], requestBytes: number): void {
  const size = jobTreeSize(spec, trials, requestBytes);
  if (size.bytes <= size.budget) return;
  const perTrial = Math.ceil(size.bytes / Math.max(1, size.counted));
  throw new ProblemsError(
    [
      {
        path: 'search',
        reason:
          `${trials.length} trials of about ${perTrial} bytes of jobs each would store more than ${size.budget} bytes ` +
          `(${JOB_TREE_BUDGET.requestFactor}× the ${requestBytes}-byte request plus ${JOB_TREE_BUDGET.perTrialBytes} bytes a trial, ` +
          `at most ${JOB_TREE_BUDGET.maxBytes}); run fewer trials or shorten the lists every trial repeats (languages, data)`,
      },
    ],
    'run spec',
  );
}

/**
 * What `POST /runs` checks before it stores anything: the Idempotency-Key header, the job tree's size, the
 * token's quotas (not for a replay of a stored run, which answers with that run) and that Redis answers.
 * Returns the idempotency key, if any.
 */
async function admitRun(
  app: FastifyInstance,
  req: FastifyRequest,
  spec: RunSpec,
  trials: TrialPlan[],
): Promise<string | undefined> {
  const key = req.headers['idempotency-key'];
  if (key !== undefined && (typeof key !== 'string' || key.length < 1 || key.length > 200)) {
    throw new ProblemsError([{ path: 'headers.idempotency-key', reason: 'must be 1 to 200 characters' }]);
  }
  checkJobTree(spec, trials, req.bodyBytes);
  if (!(key && (await app.db.runs.hasIdempotencyKey(req.identity!.id, key))))
    await checkTrialQuotas(app, req, spec, trials);
  // Fail fast, before writing anything, when the run could not be queued.
  try {
    await app.queues.redis.ping();
  } catch (err) {
    throw new UnavailableError('redis', { cause: err });
  }
  return key;
}

const runsRoutes: FastifyPluginAsyncTypebox<RunsRoutesOptions> = async (app, opts) => {
  // The spec is validated by our own validator (every problem, with roots and
  // method checks), not ajv; the parsed result travels to the handler here.
  // Long: one plugin for the run routes, which share its spec validator and YAML body parsers; each handler is short.
  const parsed = new WeakMap<object, { spec: RunSpec; trials: TrialPlan[]; warnings: string[] }>();
  const specValidator = (data: unknown) => {
    const r = validateRunSpec(data, opts.spec);
    if (!r.ok) return { error: new ProblemsError(withPositions(data, r.problems), 'run spec') };
    parsed.set(data as object, r);
    return { value: data };
  };

  registerYamlBodies(app);
  app.post(
    '/runs',
    {
      schema: createRunSchema,
      preValidation: llamaFactoryHook(opts.spec),
      validatorCompiler: ({ httpPart }) => (httpPart === 'body' ? specValidator : () => true),
    },
    async (req, reply) => {
      const { spec, trials, warnings } = parsed.get(req.body as object)!;
      // Fields a LLaMA-Factory body had that we ignore, then deprecated names the spec used.
      const allWarnings = [...(ignoredFields(req) ?? []), ...warnings];
      const key = await admitRun(app, req, spec, trials);
      let payload: FlowPayload | undefined;
      // The run and its first trial only: the agents create the others a window ahead of those running
      // (apps/worker/src/materialize.ts), so what a request stores does not grow with its trial count.
      const { run, created, outboxIds } = await app.db.runs.create({
        name: spec.name,
        spec: spec as unknown as Json,
        ownerTokenId: req.identity!.id,
        idempotencyKey: key ?? null,
        trialCount: trials.length,
        rankSteps: runRankSteps(spec, trials),
        trials: trialRows(spec, 0, INITIAL_TRIALS) as NewTrial[],
        outbox: (runId, trialIds) => {
          // Stored: the run's id (the publisher reads the rest back). Published now: the plan in hand.
          const stored = { prefix: app.queues.prefix, runId };
          payload = {
            ...stored,
            spec,
            trials: trialIds.map((trialId, i) => ({ trialId, plan: trials[i]! })),
            trialCount: trials.length,
          };
          return [{ kind: OUTBOX_KINDS.flow, payload: stored }];
        },
      });
      const log = req.log.child({ runId: run.id });
      const body = {
        id: run.id,
        name: run.name,
        status: run.status,
        trialCount: run.trialCount,
        createdAt: run.createdAt,
        queued: true,
        ...(allWarnings.length > 0 ? { warnings: allWarnings } : {}),
      };
      if (!created) {
        if (stableStringify(run.spec) !== stableStringify(spec)) {
          throw new HttpError(422, 'this Idempotency-Key was already used with a different spec');
        }
        body.queued = (await app.db.outbox.pendingCount({ runId: run.id })) === 0;
        log.info('idempotent replay of POST /runs');
        return reply.code(200).header('idempotent-replayed', 'true').send(body);
      }
      app.appMetrics.runsCreated.inc();
      try {
        body.queued = await app.outbox.publishCreated([
          {
            id: outboxIds[0]!,
            runId: run.id,
            kind: OUTBOX_KINDS.flow,
            payload,
            attempts: 0,
            createdAt: run.createdAt,
          },
        ]);
      } catch (err) {
        // Committed but not yet in Redis: the outbox publisher retries until it is.
        body.queued = false;
        log.warn({ err }, 'publishing the run failed; the outbox will retry');
      }
      log.info(
        {
          trials: run.trialCount,
          created: run.trials.length,
          queued: body.queued,
          strategy: spec.search.strategy,
        },
        'run created',
      );
      return reply.code(201).header('location', `/runs/${run.id}`).send(body);
    },
  );

  app.get('/runs', { schema: listRunsSchema }, async (req) => {
    const { status, limit, offset } = req.query;
    const { total, items } = await app.db.runs.list({
      ownerTokenId: ownerFilter(req),
      ...(status ? { status } : {}),
      limit,
      offset,
    });
    return {
      total,
      limit,
      offset,
      items,
    };
  });

  app.get('/runs/:id', { schema: getRunSchema }, async (req) => {
    const run = await app.db.runs.get(req.params.id, { ownerTokenId: ownerFilter(req) });
    const spec = run.spec as unknown as RunSpec;
    const mode = spec.search?.mode ?? 'max';
    let best: { trialId: string; trialIndex: number; value: number } | null = null;
    for (const t of run.trials) {
      if (t.bestMetric === null) continue;
      if (!best || (mode === 'max' ? t.bestMetric > best.value : t.bestMetric < best.value))
        best = { trialId: t.id, trialIndex: t.index, value: t.bestMetric };
    }
    return {
      ...run,
      spec: run.spec as Record<string, unknown>,
      trialCount: run.trialCount,
      notCreated: Math.max(0, run.trialCount - run.trials.length),
      objective: { metric: spec.search?.metric ?? '', mode },
      best,
      rungs: runRungs(spec.search),
      trials: run.trials.map((t) => ({
        ...t,
        hyperparameters: t.hyperparameters as Record<string, unknown>,
      })),
    };
  });

  app.get('/runs/:id/metrics', { schema: getMetricsSchema }, async (req) => {
    const { trial, name, lang, since, points } = req.query;
    const trials = await app.db.runs.trialIds(req.params.id, { ownerTokenId: ownerFilter(req) });
    let trialId: string | undefined;
    if (trial !== undefined) {
      trialId = findTrial(trials, trial, req.params.id).id;
      req.log = req.log.child({ runId: req.params.id, trialId });
    }
    const series = await app.db.series.downsample({
      runId: req.params.id,
      points,
      ...(trialId ? { trialId } : {}),
      ...(name ? { name } : {}),
      ...(lang ? { language: lang } : {}),
      ...(since !== undefined ? { sinceStep: since } : {}),
    });
    return { runId: req.params.id, points, aggregation: 'last' as const, series };
  });

  app.get('/runs/:id/evaluations', { schema: getEvaluationsSchema }, async (req) => {
    const run = await app.db.runs.get(req.params.id, { ownerTokenId: ownerFilter(req) });
    const indexOf = new Map(run.trials.map((t) => [t.id, t.index]));
    const rows = await app.db.artifacts.evaluations({
      runId: run.id,
      ...(req.query.benchmark ? { benchmark: req.query.benchmark } : {}),
    });
    return {
      runId: run.id,
      evaluations: rows.map((e) => ({
        trialId: e.trialId,
        trialIndex: indexOf.get(e.trialId) ?? -1,
        checkpointId: e.checkpointId,
        benchmark: e.benchmark,
        language: e.language,
        metric: e.metric,
        value: e.value,
        n: e.n,
        createdAt: e.createdAt.toISOString(),
      })),
    };
  });

  app.get('/runs/:id/generations', { schema: getGenerationsSchema }, async (req) => {
    const run = await app.db.runs.get(req.params.id, { ownerTokenId: ownerFilter(req) });
    const indexOf = new Map(run.trials.map((t) => [t.id, t.index]));
    const q = req.query;
    const filter = {
      runId: run.id,
      ...(q.trialId ? { trialId: q.trialId } : {}),
      ...(q.benchmark ? { benchmark: q.benchmark } : {}),
      ...(q.language ? { language: q.language } : {}),
      ...(q.verdict ? { verdict: q.verdict } : {}),
      ...(q.attackSuccess !== undefined ? { attackSuccess: q.attackSuccess } : {}),
    };
    const [page, total] = await Promise.all([
      app.db.generations.list(filter, { limit: q.limit ?? 50, ...(q.cursor ? { cursor: q.cursor } : {}) }),
      app.db.generations.count(filter),
    ]);
    return {
      runId: run.id,
      total,
      nextCursor: page.nextCursor,
      generations: page.items.map((g) => ({
        ...g,
        trialIndex: indexOf.get(g.trialId) ?? -1,
        reason: g.reason ?? null,
        createdAt: g.createdAt.toISOString(),
      })),
    };
  });

  app.post('/runs/:id/cancel', { schema: cancelRunSchema }, async (req, reply) => {
    const r = await app.db.runs.requestCancel(req.params.id, {
      ownerTokenId: ownerFilter(req),
      outbox: (runId, at) => {
        const payload: CancelPayload = { prefix: app.queues.prefix, runId, requestedAt: at.toISOString() };
        return [{ kind: OUTBOX_KINDS.cancel, payload: payload as unknown as Json }];
      },
    });
    const log = req.log.child({ runId: req.params.id });
    if (r.finished) throw new HttpError(409, `run ${req.params.id} already finished (${r.status})`);
    // The request is durable in Postgres; the cancel key follows now or, if Redis is away, from the outbox.
    await app.outbox.publishRun(req.params.id).catch((err) => log.warn({ err }, 'cancel key not set yet'));
    log.info({ cancelled: r.cancelled, stopping: r.stopping }, 'run cancel requested');
    return reply.code(202).send({
      id: req.params.id,
      status: r.status,
      cancelRequestedAt: r.cancelRequestedAt!,
      cancelled: r.cancelled,
      stopping: r.stopping,
    });
  });

  await app.register(rowsRoutes);
};

export default runsRoutes;
