// `mpo reproduce`: the paper's comparisons on a testbed, submitted through the API as one sweep per method
// (grid over seeds × a small learning-rate grid), waited for with progress, then summarised over seeds
// (report/reproduce-tables.ts). The base model's evaluation (the "before" of Table 1) runs here, with the
// configuration the worker's evaluation of a trial uses (apps/worker/src/eval-run.ts evalConfig).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isRunTerminal, isTrialEvaluated, isTrialTerminal } from '@mpo/queue';
import { BUILTIN_MODELS } from '@mpo/trainer';
import { API_FLAGS, ApiClient } from '../api-client.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { choiceFlag, JSON_FLAG, numberFlag } from '../flags.js';
import { createProgress } from '../progress.js';
import { register } from '../registry.js';
import {
  DEFAULT_MAX_PPL_RATIO,
  type Figure,
  type ReproduceInput,
  renderReproduce,
  reproduceTables,
  type VariantResult,
} from '../report/reproduce-tables.js';

interface Testbed {
  model: string;
  data: string;
  dominant: string;
  targets: string[];
  /** Evaluated languages, dominant first. */
  languages: string[];
  cutoff: number;
}

/** docs/testbed.md: the recipe's languages and the sequence cut of its training. */
export const TESTBEDS: Record<string, Testbed> = {
  'tiny-multilingual-transfer': {
    model: 'builtin:tiny-multilingual-transfer',
    data: 'builtin:mpo-transfer',
    dominant: 'en',
    targets: ['qaa', 'qab', 'qac'],
    languages: ['en', 'qaa', 'qab', 'qac'],
    cutoff: 96,
  },
  'tiny-multilingual': {
    model: 'builtin:tiny-multilingual',
    data: 'builtin:mpo-llama',
    dominant: 'en',
    targets: ['zh', 'ko', 'ar', 'bn', 'sw', 'ja'],
    languages: ['en', 'zh', 'ko', 'ar', 'bn', 'sw'],
    cutoff: 192,
  },
};

interface Variant {
  key: string;
  label: string;
  method: string;
  hyperparameters: Record<string, unknown>;
  table: VariantResult['table'];
}

const method = (key: string, label: string): Variant => ({
  key,
  label,
  method: key,
  hyperparameters: {},
  table: 'methods',
});
const ablation = (key: string, label: string, hyperparameters: Record<string, unknown>): Variant => ({
  key,
  label,
  method: 'mpo',
  hyperparameters,
  table: 'ablation',
});

/** MPO and the paper's nine baselines (Table 2), then its ablations (Table 4) as MPO config fields. */
export const VARIANTS: Variant[] = [
  method('mpo', 'MPO'),
  method('sft', 'SFT'),
  method('dpo', 'DPO'),
  method('ipo', 'IPO'),
  method('rdpo', 'rDPO'),
  method('cpo', 'CPO'),
  method('kto', 'KTO'),
  method('orpo', 'ORPO'),
  method('r-dpo', 'R-DPO'),
  method('simpo', 'SimPO'),
  ablation('mpo-no-retain', 'MPO w/o Retain', { retain: false }),
  ablation('mpo-no-ln', 'MPO w/o LN', { lengthNormalize: false }),
  ablation('mpo-kl', 'MPO KL constraint', { constraint: 'kl' }),
];

/**
 * Sizes measured as docs/results.md describes: the default fits 60 minutes of two idle cores, --quick 10.
 * Learning rates: the paper searched one per method (Appendix G, 3e-7…1e-6 for 8B models); these are the
 * testbed's scale (its transfer checks use 2e-4), two points of a grid.
 */
export const SIZES = {
  full: { seeds: 3, budget: 40, learningRates: [1e-4, 3e-4], maxPrompts: 40 },
  quick: { seeds: 2, budget: 16, learningRates: [3e-4], maxPrompts: 12 },
} as const;

const usage = `mpo reproduce [--testbed ID] [--seeds N] [--budget STEPS] [--lr X,Y] [--methods KEY,...]
              [--max-prompts N] [--max-ppl-ratio R] [--quick] [--out FILE.md] [--json] [--timeout MINUTES]

Submits through the API the paper's comparisons on a testbed, one sweep per method over seeds and a small
learning-rate grid: MPO and the nine baselines (sft dpo ipo rdpo cpo kto orpo r-dpo simpo) and the ablations of
MPO (mpo-no-retain, mpo-no-ln, mpo-kl). Waits with progress (stderr), evaluates the base model here, and writes
a markdown report with mean ± sd over seeds: Table 1 shape (RG and ASR per language before/after MPO and their
correlation across languages), Table 2 shape (ASR per language and average, every method), Table 4 shape
(ablations), utility (perplexity) per method. Every reward gap stands beside the same gap on harmless prompts,
the harmless refusal rate and perplexity. --json prints the same tables as JSON (with --out, the markdown
still goes to the file).

ID: tiny-multilingual-transfer (default; English and three synthetic sister languages, docs/testbed.md) or
tiny-multilingual. Default ${SIZES.full.seeds} seeds, ${SIZES.full.budget} steps, lr ${SIZES.full.learningRates.join(',')}, ${SIZES.full.maxPrompts} prompts per language
(about 60 minutes on two idle cores); --quick: ${SIZES.quick.seeds} seeds, ${SIZES.quick.budget} steps, lr ${SIZES.quick.learningRates.join(',')}, ${SIZES.quick.maxPrompts} prompts
(about 10 minutes). Each method's learning rate is the grid's lowest target ASR + harmless refusals among
those whose perplexity after over before (geometric mean over languages) is at most --max-ppl-ratio (default
${DEFAULT_MAX_PPL_RATIO}). --runs ID,... waits for and reports the runs an earlier reproduce with the same flags
submitted (in its order) instead of submitting. Needs a running API (MPO_API_URL, MPO_TOKEN) and a worker. docs/results.md.`;

export interface ReproducePlan {
  testbed: string;
  seeds: number;
  budget: number;
  learningRates: number[];
  maxPrompts: number;
  /** The learning-rate choice's perplexity guard (report/reproduce-tables.ts selectArms). */
  maxPplRatio: number;
  variants: Variant[];
}

/** What every trial is evaluated on: Table 1's reward gap, Table 2's attack success, utility (perplexity). */
const EVAL_BENCHMARKS = ['reward-gap', 'multijail', 'utility'] as const;

/** The run spec of one variant: a grid over seeds × learning rates (schemas/run-spec.schema.json). */
export function specFor(plan: ReproducePlan, v: Variant): Record<string, unknown> {
  const tb = TESTBEDS[plan.testbed]!;
  return {
    name: `reproduce ${plan.testbed}: ${v.label}`,
    model: tb.model,
    data: tb.data,
    dominantLanguage: tb.dominant,
    targetLanguages: tb.targets,
    method: v.method,
    hyperparameters: v.hyperparameters,
    resources: { ranksPerTrial: 1, device: 'cpu' },
    eval: {
      benchmarks: [...EVAL_BENCHMARKS],
      languages: tb.languages,
      maxPrompts: plan.maxPrompts,
      judge: 'builtin',
    },
    // The paper: batch 8, cosine schedule with 10% warm-up (Appendix G).
    training: {
      maxSteps: plan.budget,
      batchSize: 8,
      microBatchSize: 8,
      cutoff: tb.cutoff,
      seed: 1,
      learningRate: plan.learningRates[0],
      warmupRatio: 0.1,
      checkpointEvery: plan.budget,
    },
    search: {
      strategy: 'grid',
      space: {
        'training.seed': Array.from({ length: plan.seeds }, (_, i) => i + 1),
        'training.learningRate': plan.learningRates,
      },
      metric: 'heldout/reward_gap_mean',
      mode: 'max',
    },
  };
}

interface RunView {
  id: string;
  status: string;
  /** Trials the run plans; `trials` lists those created so far (agents create them as trials start). */
  trialCount?: number;
  trials: {
    id: string;
    status: string;
    currentStep: number;
    totalSteps: number | null;
    hyperparameters: Record<string, unknown>;
  }[];
}

function parsePlan(values: Record<string, string | boolean | undefined>): ReproducePlan {
  const size = values.quick ? SIZES.quick : SIZES.full;
  const testbed = choiceFlag(
    'testbed',
    String(values.testbed ?? 'tiny-multilingual-transfer').replace(/^builtin:/, ''),
    Object.keys(TESTBEDS),
  );
  const int = (flag: string, dflt: number, min: number) =>
    values[flag] === undefined ? dflt : numberFlag(flag, String(values[flag]), { integer: true, min });
  const learningRates =
    values.lr === undefined
      ? [...size.learningRates]
      : String(values.lr)
          .split(',')
          .map((x) => numberFlag('lr', x, { min: 0, exclusiveMin: true }));
  const keys = values.methods === undefined ? VARIANTS.map((v) => v.key) : String(values.methods).split(',');
  const variants = keys.map((k) => {
    const v = VARIANTS.find((x) => x.key === k);
    if (!v)
      throw new CliError(
        `--methods: unknown "${k}"; one of ${VARIANTS.map((x) => x.key).join(', ')}`,
        ExitCode.usage,
      );
    return v;
  });
  return {
    testbed,
    seeds: int('seeds', size.seeds, 1),
    budget: int('budget', size.budget, 1),
    learningRates,
    maxPrompts: int('max-prompts', size.maxPrompts, 1),
    maxPplRatio:
      values['max-ppl-ratio'] === undefined
        ? DEFAULT_MAX_PPL_RATIO
        : numberFlag('max-ppl-ratio', String(values['max-ppl-ratio']), { min: 1 }),
    variants,
  };
}

/** The "before" of every table: the base model evaluated as the worker evaluates a trial. */
async function evaluateBase(plan: ReproducePlan): Promise<Figure[]> {
  const tb = TESTBEDS[plan.testbed]!;
  const { parseEvalConfig, runEvaluation } = await import('@mpo/eval');
  const cfg = parseEvalConfig({
    model: tb.model,
    benchmarks: ['reward-gap', 'multijail', 'utility'],
    languages: tb.languages,
    maxPrompts: plan.maxPrompts,
    judge: 'builtin',
    cutoff: tb.cutoff,
    // apps/worker/src/eval-run.ts: generation and utility keep room for prompt + answer (EVAL_MIN_CUTOFF 512).
    benchmarkCutoff: Math.max(512, tb.cutoff),
    data: { path: tb.data },
    threads: 2,
  });
  const out: Figure[] = [];
  const progress = createProgress({ label: 'base model evaluation', total: 0 });
  let phase = '';
  await runEvaluation(cfg, (r) => out.push(r), {
    onProgress: (p) => {
      if (p.benchmark !== phase) {
        phase = p.benchmark;
        progress.phase(phase, p.total);
      }
      progress.update(p.done);
    },
  });
  progress.finish();
  return out;
}

/**
 * Trials evaluated so far, of those that will be (isTrialEvaluated): one whose run is over counts as done, one
 * whose evaluations cover every benchmark of the plan too (each benchmark's figures arrive as it finishes).
 */
async function evaluationProgress(
  api: ApiClient,
  views: RunView[],
): Promise<{ done: number; total: number }> {
  let done = 0;
  let total = 0;
  for (const v of views) {
    const toEvaluate = v.trials.filter((t) => isTrialEvaluated(t.status));
    total += toEvaluate.length;
    if (isRunTerminal(v.status)) {
      done += toEvaluate.length;
      continue;
    }
    const { evaluations } = await api.get<{ evaluations: { trialId: string; benchmark: string }[] }>(
      `/runs/${encodeURIComponent(v.id)}/evaluations`,
    );
    const benchmarksOf = new Map<string, Set<string>>();
    for (const e of evaluations) {
      const seen = benchmarksOf.get(e.trialId) ?? new Set();
      benchmarksOf.set(e.trialId, seen.add(e.benchmark));
    }
    done += toEvaluate.filter((t) => EVAL_BENCHMARKS.every((b) => benchmarksOf.get(t.id)?.has(b))).length;
  }
  return { done, total };
}

/**
 * Waits for the runs with progress on stderr: optimizer steps while trials train, then (phase "evaluate")
 * trials evaluated, the tail after the last step that would otherwise show a full bar for many minutes.
 */
async function waitFor(api: ApiClient, ids: string[], timeoutMs: number): Promise<RunView[]> {
  const started = Date.now();
  const unitOf: Record<string, string> = { reproduce: 'steps/s', evaluate: 'trials/s' };
  // Trials train while the base model is evaluated, and are evaluated while others train: each stage's count is
  // above 0 when this starts watching it, so its rate counts from the first look.
  const watch = (label: string, total: number) =>
    createProgress({ label, total, unit: unitOf[label], everyMs: 10_000, rateFromFirstUpdate: true });
  let progress = watch('reproduce', 0);
  let shown = { phase: 'reproduce', total: -1 };
  const show = (phase: string, done: number, total: number, note: string) => {
    if (phase !== shown.phase) {
      progress.finish();
      progress = watch(phase, total);
    } else if (total !== shown.total) {
      // Trials learn their step count when they start: the total grows while done, the rate and ETA go on.
      progress.setTotal(total);
    }
    shown = { phase, total };
    progress.update(done, note);
  };
  for (;;) {
    const views = await Promise.all(ids.map((id) => api.get<RunView>(`/runs/${encodeURIComponent(id)}`)));
    const trials = views.flatMap((v) => v.trials);
    const finished = views.filter((v) => isRunTerminal(v.status)).length;
    const trained = trials.filter((t) => isTrialTerminal(t.status)).length;
    const planned = views.reduce((a, v) => a + (v.trialCount ?? v.trials.length), 0);
    const runsDone = `runs done ${finished}/${views.length}`;
    if (trained < planned) {
      const total = trials.reduce((a, t) => a + (t.totalSteps ?? 0), 0);
      const done = trials.reduce((a, t) => a + Math.min(t.currentStep, t.totalSteps ?? t.currentStep), 0);
      show('reproduce', done, total, `trials trained ${trained}/${planned}, ${runsDone}`);
    } else {
      const e = await evaluationProgress(api, views);
      show('evaluate', e.done, e.total, `trials evaluated ${e.done}/${e.total}, ${runsDone}`);
    }
    if (finished === views.length) {
      progress.finish();
      return views;
    }
    if (Date.now() - started > timeoutMs)
      throw new CliError(
        `the runs did not finish in ${Math.round(timeoutMs / 60_000)} minutes (${ids.join(', ')}); is a worker running?`,
        ExitCode.failure,
      );
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function submit(api: ApiClient, plan: ReproducePlan): Promise<{ v: Variant; id: string }[]> {
  const out: { v: Variant; id: string }[] = [];
  for (const v of plan.variants) {
    const r = await api.request<{ id: string; trialCount: number }>('POST', '/runs', specFor(plan, v));
    out.push({ v, id: r.id });
    process.stderr.write(`submitted ${v.label}: run ${r.id} (${r.trialCount} trials)\n`);
  }
  return out;
}

/**
 * --runs: the runs an earlier `mpo reproduce` with the same flags submitted (its stderr lists them), in the
 * order of its variants, waited for and reported again instead of submitting new ones.
 */
async function attach(
  api: ApiClient,
  plan: ReproducePlan,
  ids: string[],
): Promise<{ v: Variant; id: string }[]> {
  if (ids.length !== plan.variants.length)
    throw new CliError(
      `--runs: ${ids.length} run ids for ${plan.variants.length} methods (${plan.variants.map((v) => v.key).join(',')})`,
      ExitCode.usage,
    );
  const out: { v: Variant; id: string }[] = [];
  for (const [i, v] of plan.variants.entries()) {
    const run = await api.get<{ id: string; spec: Record<string, unknown> }>(
      `/runs/${encodeURIComponent(ids[i]!)}`,
    );
    const given = (run.spec.hyperparameters ?? {}) as Record<string, unknown>;
    const same = Object.entries(v.hyperparameters).every(([k, x]) => given[k] === x);
    if (run.spec.method !== v.method || !same)
      throw new CliError(
        `--runs: run ${ids[i]} is not ${v.label} (method ${String(run.spec.method)})`,
        ExitCode.usage,
      );
    out.push({ v, id: run.id });
  }
  return out;
}

/** sha256 and recipe of the checkpoint the report came from, when the testbed records them. */
function checkpointNote(testbed: string): string {
  const dir = BUILTIN_MODELS[`builtin:${testbed}`]!();
  const meta = join(dir, 'testbed.json');
  if (!existsSync(meta)) return `checkpoint ${dir}`;
  const m = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
  const sha = (m.modelSafetensorsSha256 ?? m.sha256) as string | undefined;
  // The init seed is recorded only where it differs from the seed; the checkpoint is that training run.
  const init = m.initSeed !== undefined ? ` and init seed ${m.initSeed}` : '';
  return `checkpoint \`${testbed}\`${sha ? `, model.safetensors sha256 \`${sha}\`` : ''}${
    m.seed !== undefined ? `, built with seed ${m.seed}${init}` : ''
  }`;
}

register({
  name: 'reproduce',
  summary: "run the paper's comparisons on a testbed through the API and report them over seeds",
  usage,
  async run(argv) {
    // Long: a CLI command: plan, submit, watch and report, in the order the user sees them.
    const { values } = parseArgs({
      args: argv,
      options: {
        ...API_FLAGS,
        testbed: { type: 'string' },
        seeds: { type: 'string' },
        budget: { type: 'string' },
        lr: { type: 'string' },
        methods: { type: 'string' },
        'max-prompts': { type: 'string' },
        'max-ppl-ratio': { type: 'string' },
        quick: { type: 'boolean', default: false },
        out: { type: 'string' },
        timeout: { type: 'string', default: '240' },
        runs: { type: 'string' },
        ...JSON_FLAG,
      },
    });
    const plan = parsePlan(values);
    const timeoutMs = numberFlag('timeout', values.timeout!, { min: 0, exclusiveMin: true }) * 60_000;
    const api = new ApiClient({
      ...(values.api ? { url: values.api } : {}),
      ...(values.token ? { token: values.token } : {}),
    });
    const started = Date.now();
    const submitted = values.runs ? await attach(api, plan, values.runs.split(',')) : await submit(api, plan);
    // The base model's evaluation runs while the worker trains: it is the same for every run. If it fails,
    // the runs it would be compared with are cancelled rather than left to train for nothing.
    const base = await evaluateBase(plan).catch(async (err) => {
      for (const s of submitted)
        await api.request('POST', `/runs/${encodeURIComponent(s.id)}/cancel`).catch(() => {});
      throw err;
    });
    const views = await waitFor(
      api,
      submitted.map((s) => s.id),
      timeoutMs,
    );
    const variants: VariantResult[] = [];
    for (const [i, { v, id }] of submitted.entries()) {
      const { evaluations } = await api.get<{ evaluations: (Figure & { trialId: string })[] }>(
        `/runs/${encodeURIComponent(id)}/evaluations`,
      );
      variants.push({
        key: v.key,
        label: v.label,
        table: v.table,
        runId: id,
        trials: views[i]!.trials.map((t) => ({
          seed: Number(t.hyperparameters['training.seed']),
          learningRate: Number(t.hyperparameters['training.learningRate']),
          status: t.status,
          figures: evaluations.filter((e) => e.trialId === t.id),
        })),
      });
    }
    const tb = TESTBEDS[plan.testbed]!;
    const input: ReproduceInput = { dominant: tb.dominant, languages: tb.languages, base, variants };
    const tables = reproduceTables(input, plan.maxPplRatio);
    const minutes = (Date.now() - started) / 60_000;
    const command = [
      'mpo reproduce',
      ...argv.filter((a, i) => a !== '--token' && argv[i - 1] !== '--token'),
    ].join(' ');
    const json = {
      command,
      plan: { ...plan, variants: plan.variants.map((v) => v.key) },
      minutes,
      ...tables,
    };
    const header = `# mpo reproduce: ${plan.testbed}

Produced by \`${command}\` in ${minutes.toFixed(1)} minutes of wall time: ${plan.variants.length} sweeps of
${plan.seeds} seeds × learning rates ${plan.learningRates.join(', ')}, ${plan.budget} optimizer steps each (batch 8),
${plan.maxPrompts} held-out prompts per language; ${checkpointNote(plan.testbed)}. Figures are mean ± sample sd
over the seeds that succeeded; the base model has one value.`;
    const md = renderReproduce(tables, header);
    // --out takes the markdown; stdout the JSON (--json) or, without --out, the markdown.
    if (values.out) writeFileSync(resolve(values.out), md);
    if (values.json) process.stdout.write(`${JSON.stringify(json)}\n`);
    else if (!values.out) process.stdout.write(md);
    return ExitCode.ok;
  },
});
