import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { API_FLAGS, ApiClient } from '../api-client.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { JSON_FLAG } from '../flags.js';
import { readJsonFile } from '../read-json.js';
import { register } from '../registry.js';
import {
  bestTrial,
  type EvalRow,
  type GenerationSample,
  type ReportRun,
  type ReportTrial,
  renderReport,
} from '../report/render.js';

/** Attack successes and refusals shown per language. */
const SAMPLES = { attackSuccess: 2, refused: 1 };

async function generationSamples(api: ApiClient, runId: string, t: ReportTrial): Promise<GenerationSample[]> {
  if (!t.id) return [];
  const languages = [
    ...new Set(
      t.evaluations
        .filter((e) => (e.benchmark === 'multijail' || e.benchmark === 'csrt') && e.language !== 'avg')
        .map((e) => e.language),
    ),
  ];
  const out: GenerationSample[] = [];
  for (const language of languages) {
    for (const [success, limit] of [
      [true, SAMPLES.attackSuccess],
      [false, SAMPLES.refused],
    ] as const) {
      const q = new URLSearchParams({
        trialId: t.id!,
        language,
        attackSuccess: String(success),
        limit: String(limit),
      });
      const page = await api.get<{ generations: GenerationSample[] }>(
        `/runs/${encodeURIComponent(runId)}/generations?${q}`,
      );
      out.push(...page.generations);
    }
  }
  return out;
}

const usage = `mpo report RUN_ID [RUN_ID...] [--baseline FILE.json] [--label RUN_ID=LABEL ...] [--out FILE.md] [--json]

Markdown tables in the shape of the MPO paper's Table 2 (ASR per language and average, one row per run's best
trial) and Table 1 (reward gap and ASR per language before and after, for the first run), utility, an ablation
table when several MPO runs are given, and each sweep with its spread. --baseline is the initial model's
evaluation: a JSON array of {"benchmark","language","metric","value","n"} (what \`mpo eval --json\` prints).`;

interface RunView {
  id: string;
  name: string;
  spec: {
    method: string;
    hyperparameters?: Record<string, unknown>;
    search: { metric: string; mode: 'min' | 'max' };
    training?: { cutoff?: number };
  };
  trials: {
    id: string;
    index: number;
    status: string;
    hyperparameters: Record<string, unknown>;
    bestMetric: number | null;
    stopReason?: string | null;
  }[];
}

const METHOD_LABELS: Record<string, string> = {
  mpo: 'MPO',
  dpo: 'DPO',
  simpo: 'SimPO',
  sft: 'SFT',
  ipo: 'IPO',
  rdpo: 'rDPO',
  cpo: 'CPO',
  kto: 'KTO',
  orpo: 'ORPO',
  'r-dpo': 'R-DPO',
};

export function labelFor(run: RunView): string {
  const base = METHOD_LABELS[run.spec.method] ?? run.spec.method;
  const h = run.spec.hyperparameters ?? {};
  const parts = [];
  if (h.retain === false) parts.push('w/o Retain');
  if (h.lengthNormalize === false) parts.push('w/o LN');
  if (h.constraint === 'kl') parts.push('KL constraint');
  return [base, ...parts].join(' ');
}

register({
  name: 'report',
  summary: "write a markdown report of runs in the shape of the paper's Tables 1 and 2",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...API_FLAGS,
        baseline: { type: 'string' },
        out: { type: 'string' },
        label: { type: 'string', multiple: true },
        ...JSON_FLAG,
      },
    });
    if (positionals.length === 0) throw new CliError(`RUN_ID is required\n\nusage: ${usage}`, ExitCode.usage);
    const api = new ApiClient({
      ...(values.api ? { url: values.api } : {}),
      ...(values.token ? { token: values.token } : {}),
    });
    const labels = new Map((values.label ?? []).map((l) => l.split('=', 2) as [string, string]));
    const runs: ReportRun[] = [];
    for (const id of positionals) {
      const run = await api.get<RunView>(`/runs/${encodeURIComponent(id)}`);
      const { evaluations } = await api.get<{ evaluations: (EvalRow & { trialId: string })[] }>(
        `/runs/${encodeURIComponent(id)}/evaluations`,
      );
      runs.push({
        id: run.id,
        name: run.name,
        method: run.spec.method,
        label: labels.get(id) ?? labelFor(run),
        metric: run.spec.search.metric,
        mode: run.spec.search.mode,
        trials: run.trials.map((t) => ({ ...t, evaluations: evaluations.filter((e) => e.trialId === t.id) })),
        ...(run.spec.training?.cutoff !== undefined ? { cutoff: run.spec.training.cutoff } : {}),
      });
    }
    // The focus run's best trial shows what its ASR counted: a few judged responses per language.
    const focus = runs[0];
    const best = focus ? bestTrial(focus) : undefined;
    if (focus && best) best.generations = await generationSamples(api, focus.id, best);
    let baseline: EvalRow[] | undefined;
    if (values.baseline) {
      const raw = readJsonFile(resolve(values.baseline), 'baseline');
      if (!Array.isArray(raw))
        throw new CliError(
          `--baseline ${values.baseline}: expected a JSON array of results`,
          ExitCode.invalidInput,
        );
      baseline = raw as EvalRow[];
    }
    if (values.json) {
      // The data behind the tables: runs with their trials and evaluations, and the baseline.
      process.stdout.write(`${JSON.stringify({ runs, baseline: baseline ?? null })}\n`);
      return ExitCode.ok;
    }
    const md = renderReport({
      runs,
      ...(baseline ? { baseline } : {}),
      // The command as typed, without the token.
      command: [
        'mpo report',
        ...positionals,
        ...(values.baseline ? ['--baseline', values.baseline] : []),
        ...(values.label ?? []).map((l) => `--label ${l}`),
        ...(values.out ? ['--out', values.out] : []),
      ].join(' '),
    });
    if (values.out) writeFileSync(resolve(values.out), md);
    else process.stdout.write(md);
    return ExitCode.ok;
  },
});
