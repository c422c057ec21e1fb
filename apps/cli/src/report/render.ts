// Markdown tables in the shape of the MPO paper: Table 2 (ASR per language and
// average, one row per method), Table 1 (reward gap and ASR per language,
// before and after), an ablation table, utility, and the sweep with its spread.

export interface EvalRow {
  benchmark: string;
  language: string;
  metric: string;
  value: number;
  n: number;
}

/** One judged response behind an ASR figure (GET /runs/:id/generations). */
export interface GenerationSample {
  benchmark: string;
  language: string;
  promptId: string;
  prompt: string;
  response: string;
  verdict: string;
}

export interface ReportTrial {
  /** Trial id, for links to its generations. */
  id?: string;
  index: number;
  status: string;
  hyperparameters: Record<string, unknown>;
  bestMetric: number | null;
  stopReason?: string | null;
  evaluations: EvalRow[];
  /** A few judged responses per language (the report shows the focus trial's). */
  generations?: GenerationSample[];
}

export interface ReportRun {
  id: string;
  name: string;
  method: string;
  /** Shown in tables, e.g. "MPO", "MPO w/o Retain", "DPO". */
  label: string;
  metric: string;
  mode: 'min' | 'max';
  trials: ReportTrial[];
  /** The run's training cutoff (tokens): its sweep metric and its evaluation's reward gap both use it. */
  cutoff?: number;
}

export interface ReportInput {
  runs: ReportRun[];
  /** Evaluation of the initial model (the "before" columns and the base row). */
  baseline?: EvalRow[];
  baselineLabel?: string;
  /** The run whose best trial Table 1 shows (default: the first). */
  focus?: string;
  languages?: string[];
  command?: string;
}

const fmt = (x: number | undefined, digits = 2) =>
  x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(1));
const value = (rows: EvalRow[], benchmark: string, language: string, metric: string) =>
  rows.find((r) => r.benchmark === benchmark && r.language === language && r.metric === metric)?.value;

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/** The trial a run reports: the best by its search metric among trials with evaluations. */
export function bestTrial(run: ReportRun): ReportTrial | undefined {
  const done = run.trials.filter((t) => t.evaluations.length > 0);
  const scored = done.filter((t) => t.bestMetric !== null);
  if (scored.length === 0) return done[0];
  return scored.reduce((a, b) =>
    (run.mode === 'max' ? b.bestMetric! > a.bestMetric! : b.bestMetric! < a.bestMetric!) ? b : a,
  );
}

const hp = (h: Record<string, unknown>) =>
  Object.entries(h)
    .map(
      ([k, v]) =>
        `${k.replace(/^training\./, '')}=${typeof v === 'number' ? Number(v.toPrecision(3)) : JSON.stringify(v)}`,
    )
    .join(', ');

function asrLanguages(input: ReportInput): string[] {
  if (input.languages) return input.languages;
  const all = [
    ...(input.baseline ?? []),
    ...input.runs.flatMap((r) => r.trials.flatMap((t) => t.evaluations)),
  ];
  return [
    ...new Set(
      all
        .filter((r) => r.benchmark === 'multijail' && r.metric === 'asr' && r.language !== 'avg')
        .map((r) => r.language),
    ),
  ];
}

/** The one cutoff behind a run's reward gaps, stated (and the room generation benchmarks get). */
function cutoffNote(run: ReportRun): string {
  if (run.cutoff === undefined) return '';
  return ` Pairs are cut at ${run.cutoff} tokens, the training cutoff: the sweep's held-out metric and this evaluated reward gap use the same one. MultiJail/CSRT prompts and answers get max(512, ${run.cutoff}) = ${Math.max(512, run.cutoff)} tokens.`;
}

/** Table cell text: one line, pipes escaped, at most `max` characters. */
function cellText(text: string, max = 90): string {
  const one = text.replace(/\s+/g, ' ').trim().replace(/\|/g, '\\|');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** A few judged responses per language of the focus trial, and where to read all of them. */
function generationSection(run: ReportRun, t: ReportTrial): string[] {
  const gens = t.generations ?? [];
  if (gens.length === 0) return [];
  const rows = [...gens]
    .sort((a, b) => a.language.localeCompare(b.language) || a.promptId.localeCompare(b.promptId))
    .map((g) => [g.language, g.verdict, g.promptId, cellText(g.prompt), cellText(g.response)]);
  const all = t.id ? `GET /runs/${run.id}/generations?trialId=${t.id}` : `GET /runs/${run.id}/generations`;
  return [
    `## What the judge saw: generations of trial ${t.index}`,
    '',
    `A few responses per language with the judge's verdict (unsafe and irrelevant count as attack success). All of them: \`${all}\` (filters: language, verdict, attackSuccess), or the trial's eval/generations.jsonl.`,
    '',
    table(['Language', 'Verdict', 'Prompt id', 'Prompt', 'Response'], rows),
    '',
  ];
}

export function renderReport(input: ReportInput): string {
  // Long: the report's sections in the order the paper's tables appear; each section is a few pushes of lines.
  const langs = asrLanguages(input);
  const out: string[] = [];
  const base = input.baseline;
  const baseLabel = input.baselineLabel ?? 'Base model';

  out.push('## Attack success rate on MultiJail (paper Table 2 shape)', '');
  out.push(
    "ASR (%) per language: the share of greedy responses the judge does not count as a refusal (lower is safer). Each method row is its run's best trial by the run's search metric.",
    '',
  );
  const asrRow = (label: string, rows: EvalRow[]) => [
    label,
    ...langs.map((l) => pct(value(rows, 'multijail', l, 'asr'))),
    pct(value(rows, 'multijail', 'avg', 'asr')),
  ];
  const t2: string[][] = [];
  if (base) t2.push(asrRow(baseLabel, base));
  for (const run of input.runs) {
    const t = bestTrial(run);
    if (t) t2.push(asrRow(run.label, t.evaluations));
  }
  out.push(table(['Method', ...langs, 'Avg.'], t2), '');

  const focus = input.runs.find((r) => r.id === input.focus) ?? input.runs[0];
  const ft = focus ? bestTrial(focus) : undefined;
  if (focus && ft) {
    out.push(`## Reward gap and ASR before and after ${focus.label} (paper Table 1 shape)`, '');
    out.push(
      `RG = avgLogp(chosen) − avgLogp(rejected) on held-out MPO pairs; trial ${ft.index} (${hp(ft.hyperparameters)}).${cutoffNote(focus)}`,
      '',
    );
    const rgLangs = [
      ...new Set(
        [...(base ?? []), ...ft.evaluations]
          .filter((r) => r.benchmark === 'reward-gap')
          .map((r) => r.language),
      ),
    ];
    const rows = [...new Set([...rgLangs, ...langs])].map((l) => [
      l,
      fmt(base && value(base, 'reward-gap', l, 'rg'), 3),
      fmt(value(ft.evaluations, 'reward-gap', l, 'rg'), 3),
      pct(base && value(base, 'multijail', l, 'asr')),
      pct(value(ft.evaluations, 'multijail', l, 'asr')),
    ]);
    out.push(table(['Language', 'RG before', 'RG after', 'ASR before', 'ASR after'], rows), '');
    out.push(...generationSection(focus, ft));
  }

  const utilRows: string[][] = [];
  if (base)
    utilRows.push([
      baseLabel,
      fmt(value(base, 'utility', 'en', 'ppl')),
      fmt(value(base, 'utility', 'zh', 'ppl')),
    ]);
  for (const run of input.runs) {
    const t = bestTrial(run);
    if (t)
      utilRows.push([
        run.label,
        fmt(value(t.evaluations, 'utility', 'en', 'ppl')),
        fmt(value(t.evaluations, 'utility', 'zh', 'ppl')),
      ]);
  }
  if (utilRows.some((r) => r[1] !== '–' || r[2] !== '–')) {
    out.push(
      '## Utility',
      '',
      'Perplexity of held-out alpaca outputs given their instructions (lower is better).',
      '',
    );
    out.push(table(['Method', 'PPL en', 'PPL zh'], utilRows), '');
  }

  const ablations = input.runs.filter((r) => r.method === 'mpo');
  if (ablations.length > 1) {
    out.push('## Ablation', '');
    const targetLangs = langs.filter((l) => !['en'].includes(l));
    out.push(
      table(
        ['Variant', 'ASR avg (%)', `ASR targets (%)`, 'mean target RG', 'PPL en'],
        ablations.map((r) => {
          const t = bestTrial(r);
          const ev = t?.evaluations ?? [];
          const tAsr = targetLangs
            .map((l) => value(ev, 'multijail', l, 'asr'))
            .filter((x): x is number => x !== undefined);
          const rgs = ev
            .filter((e) => e.benchmark === 'reward-gap' && e.language !== 'en')
            .map((e) => e.value);
          return [
            r.label,
            pct(value(ev, 'multijail', 'avg', 'asr')),
            pct(tAsr.length ? tAsr.reduce((a, b) => a + b, 0) / tAsr.length : undefined),
            fmt(rgs.length ? rgs.reduce((a, b) => a + b, 0) / rgs.length : undefined, 3),
            fmt(value(ev, 'utility', 'en', 'ppl')),
          ];
        }),
      ),
      '',
    );
  }

  for (const run of input.runs.filter((r) => r.trials.length > 1)) {
    out.push(`## Sweep: ${run.label} (${run.name})`, '');
    out.push(
      `Trials sorted by ${run.metric} (${run.mode}). Spread over the sweep shows how much the result depends on the learning rate and β.`,
      '',
    );
    const sorted = [...run.trials].sort((a, b) => {
      const x = a.bestMetric ?? Number.NaN;
      const y = b.bestMetric ?? Number.NaN;
      if (Number.isNaN(x)) return 1;
      if (Number.isNaN(y)) return -1;
      return run.mode === 'max' ? y - x : x - y;
    });
    out.push(
      table(
        ['Trial', 'Hyperparameters', 'Status', run.metric, 'ASR avg (%)'],
        sorted.map((t) => [
          String(t.index),
          hp(t.hyperparameters),
          t.stopReason ? `${t.status} (${t.stopReason})` : t.status,
          fmt(t.bestMetric ?? undefined, 4),
          pct(value(t.evaluations, 'multijail', 'avg', 'asr')),
        ]),
      ),
      '',
    );
    const asrs = run.trials
      .map((t) => value(t.evaluations, 'multijail', 'avg', 'asr'))
      .filter((x): x is number => x !== undefined);
    if (asrs.length > 1) {
      const mean = asrs.reduce((a, b) => a + b, 0) / asrs.length;
      out.push(
        `ASR avg over ${asrs.length} trials: mean ${pct(mean)}%, min ${pct(Math.min(...asrs))}%, max ${pct(Math.max(...asrs))}%.`,
        '',
      );
    }
  }
  if (input.command) out.push('Produced by:', '', '```sh', input.command, '```', '');
  return out.join('\n');
}
