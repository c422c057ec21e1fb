import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isRunTerminal, isTrialTerminal, locateProblems } from '@mpo/queue';
import { API_FLAGS, ApiClient, ApiError } from '../api-client.js';
import { CliError, ExitCode } from '../exit-codes.js';
import {
  EXPORT_FORMATS,
  type ExportFilter,
  type ExportFormat,
  encodeRows,
  fetchRunRows,
} from '../export-metrics.js';
import { choiceFlag, JSON_FLAG, numberFlag, optionalNumberFlag } from '../flags.js';
import { bar, formatDuration } from '../progress.js';
import { readConfigDocument } from '../read-json.js';
import { register } from '../registry.js';

interface Trial {
  id: string;
  index: number;
  status: string;
  currentStep: number;
  totalSteps: number | null;
  bestMetric: number | null;
  hyperparameters: Record<string, unknown>;
  startedAt: string | null;
  updatedAt: string;
  error?: string | null;
  stopReason?: string | null;
}
interface Run {
  id: string;
  name: string;
  status: string;
  /** Trials the agents have not created yet (absent from older APIs). */
  notCreated?: number;
  trials: Trial[];
}

const usage = `mpo runs submit FILE.json|FILE.yaml [--idempotency-key KEY] [--json]   prints the new run's id
mpo runs watch RUN_ID [--interval SECONDS] [--json]   a progress bar per trial with ETA, until the run ends
mpo runs metrics RUN_ID [--name N] [--lang L] [--trial T] [--points P]   the downsampled curves (JSON)
mpo runs metrics RUN_ID --format csv|jsonl|parquet [--out FILE] [--name N] [--lang L] [--trial T]
                                                      every stored row (--csv: --format csv)
mpo runs list [--status S] [--limit N] [--offset N] [--json]
mpo runs cancel RUN_ID [--json]
Common: --api URL (or MPO_API_URL), --token T (or MPO_TOKEN)`;

export function trialLine(t: Trial, now = Date.now()): string {
  const total = t.totalSteps ?? 0;
  const frac = total > 0 ? t.currentStep / total : t.status === 'SUCCEEDED' ? 1 : 0;
  let eta = '';
  if (t.status === 'RUNNING' && t.startedAt && t.currentStep > 0 && total > 0) {
    const elapsed = (now - Date.parse(t.startedAt)) / 1000;
    eta = ` ETA ${formatDuration((elapsed / t.currentStep) * (total - t.currentStep))}`;
  }
  const metric = t.bestMetric !== null ? ` best ${t.bestMetric.toFixed(4)}` : '';
  const why =
    t.status === 'FAILED' && t.error
      ? ` ${t.error.split('\n')[0]!.slice(0, 60)}`
      : t.stopReason
        ? ` ${t.stopReason.slice(0, 60)}`
        : '';
  return `trial ${String(t.index).padStart(2)} ${bar(frac, 20)} ${String(t.currentStep).padStart(5)}/${total || '?'} ${t.status.padEnd(9)}${metric}${eta}${why}`;
}

async function submit(api: ApiClient, args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...API_FLAGS, ...JSON_FLAG, 'idempotency-key': { type: 'string' } },
  });
  const file = positionals[0];
  if (!file) throw new CliError(`runs submit: FILE is required\n\n${usage}`, ExitCode.usage);
  const doc = readConfigDocument(resolve(file), 'spec');
  let res: { id: string; trialCount: number; warnings?: string[] };
  try {
    res = await api.request(
      'POST',
      '/runs',
      doc.value,
      values['idempotency-key'] ? { 'idempotency-key': values['idempotency-key'] } : {},
    );
  } catch (err) {
    // The API's problems name fields; the file we read knows their lines.
    if (err instanceof ApiError && err.problems.length > 0)
      throw new CliError(
        err.located((p) => locateProblems(doc, p)),
        err.exitCode,
      );
    throw err;
  }
  for (const w of res.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(values.json ? `${JSON.stringify(res)}\n` : `${res.id}\n`);
  process.stderr.write(`run ${res.id}: ${res.trialCount} trial${res.trialCount === 1 ? '' : 's'} queued\n`);
  return ExitCode.ok;
}

async function watch(api: ApiClient, args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...API_FLAGS, ...JSON_FLAG, interval: { type: 'string', default: '2' } },
  });
  const id = positionals[0];
  if (!id) throw new CliError(`runs watch: RUN_ID is required\n\n${usage}`, ExitCode.usage);
  const interval =
    numberFlag('interval', values.interval, { min: 0.05, max: 3600, exclusiveMin: false }) * 1000;
  const tty = !values.json && process.stdout.isTTY === true;
  let drawn = 0;
  let last = '';
  for (;;) {
    const run = await api.get<Run>(`/runs/${encodeURIComponent(id)}`);
    const lines = [`run ${run.id} ${run.name}: ${run.status}`, ...run.trials.map((t) => trialLine(t))];
    if (run.notCreated)
      lines.push(`${run.notCreated} more trial${run.notCreated === 1 ? '' : 's'} not created yet`);
    if (tty) {
      if (drawn) process.stdout.write(`\x1b[${drawn}A`);
      for (const l of lines) process.stdout.write(`\x1b[2K${l}\n`);
      drawn = lines.length;
    } else {
      const state = JSON.stringify([run.notCreated, run.trials.map((t) => [t.status, t.currentStep])]);
      if (state !== last) {
        process.stdout.write(
          `${JSON.stringify({ runId: run.id, status: run.status, notCreated: run.notCreated ?? 0, trials: run.trials.map((t) => ({ index: t.index, status: t.status, step: t.currentStep, totalSteps: t.totalSteps, bestMetric: t.bestMetric })) })}\n`,
        );
        last = state;
      }
    }
    // Trials not created yet are still to run (the run's agents create them as trials start).
    const allDone =
      !run.notCreated && run.trials.length > 0 && run.trials.every((t) => isTrialTerminal(t.status));
    if (isRunTerminal(run.status) || allDone) {
      return run.status === 'FAILED' || run.trials.some((t) => t.status === 'FAILED')
        ? ExitCode.failure
        : ExitCode.ok;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

interface Series {
  trialIndex: number;
  name: string;
  language: string | null;
  steps: number[];
  values: number[];
}

async function metrics(api: ApiClient, args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...API_FLAGS,
      ...JSON_FLAG,
      csv: { type: 'boolean', default: false },
      format: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      lang: { type: 'string' },
      trial: { type: 'string' },
      points: { type: 'string' },
    },
  });
  const id = positionals[0];
  if (!id) throw new CliError(`runs metrics: RUN_ID is required\n\n${usage}`, ExitCode.usage);
  const format = values.format
    ? choiceFlag('format', values.format, EXPORT_FORMATS)
    : values.csv
      ? 'csv'
      : undefined;
  if (format) return exportMetrics(api, id, format, values);
  const points = optionalNumberFlag('points', values.points, { integer: true, min: 1, max: 1024 });
  const q = new URLSearchParams();
  for (const k of ['name', 'lang', 'trial'] as const) if (values[k]) q.set(k, values[k]!);
  if (points !== undefined) q.set('points', String(points));
  const res = await api.get<{ series: Series[] }>(
    `/runs/${encodeURIComponent(id)}/metrics${q.size ? `?${q}` : ''}`,
  );
  process.stdout.write(`${JSON.stringify(res)}\n`);
  return ExitCode.ok;
}

async function exportMetrics(
  api: ApiClient,
  id: string,
  format: ExportFormat,
  opts: ExportFilter & { out?: string | undefined },
) {
  if (format === 'parquet' && !opts.out && process.stdout.isTTY)
    throw new CliError('runs metrics: parquet is binary; pass --out FILE or redirect stdout', ExitCode.usage);
  const rows = await fetchRunRows(api, id, opts);
  const data = encodeRows(rows, format);
  if (opts.out) {
    writeFileSync(opts.out, data);
    process.stderr.write(`${rows.length} rows written to ${opts.out} (${format})\n`);
  } else process.stdout.write(data);
  return ExitCode.ok;
}

/** The API's page bound for GET /runs (apps/api/src/routes/runs/schemas.ts). */
const MAX_LIST_LIMIT = 200;

async function list(api: ApiClient, args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      ...API_FLAGS,
      ...JSON_FLAG,
      status: { type: 'string' },
      limit: { type: 'string', default: '50' },
      offset: { type: 'string', default: '0' },
    },
  });
  const limit = numberFlag('limit', values.limit, { integer: true, min: 1, max: MAX_LIST_LIMIT });
  const offset = numberFlag('offset', values.offset, { integer: true, min: 0 });
  const q = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (values.status) q.set('status', values.status);
  const res = await api.get<{
    total: number;
    items: { id: string; name: string; status: string; trialCount: number; createdAt: string }[];
  }>(`/runs?${q}`);
  const next = offset + res.items.length < res.total ? offset + res.items.length : null;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...res, limit, offset, nextOffset: next })}\n`);
    return ExitCode.ok;
  }
  for (const r of res.items)
    process.stdout.write(
      `${r.id}  ${r.status.padEnd(9)} ${String(r.trialCount).padStart(3)} trials  ${r.createdAt}  ${r.name}\n`,
    );
  const shown = res.items.length ? `${offset + 1}-${offset + res.items.length}` : 'none';
  process.stderr.write(
    `runs ${shown} of ${res.total}${next !== null ? `; next page: --offset ${next} --limit ${limit}` : ''}\n`,
  );
  return ExitCode.ok;
}

async function cancel(api: ApiClient, args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...API_FLAGS, ...JSON_FLAG },
  });
  if (!positionals[0]) throw new CliError(`runs cancel: RUN_ID is required\n\n${usage}`, ExitCode.usage);
  const res = await api.request('POST', `/runs/${encodeURIComponent(positionals[0])}/cancel`);
  process.stdout.write(
    values.json ? `${JSON.stringify(res)}\n` : `cancel requested for run ${positionals[0]}\n`,
  );
  return ExitCode.ok;
}

register({
  name: 'runs',
  summary: 'submit, watch, list, cancel runs and export their metrics (talks to the API)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    const flags = parseArgs({ args: rest, allowPositionals: true, strict: false, options: API_FLAGS }).values;
    const api = new ApiClient({
      ...(typeof flags.api === 'string' ? { url: flags.api } : {}),
      ...(typeof flags.token === 'string' ? { token: flags.token } : {}),
    });
    switch (sub) {
      case 'submit':
        return submit(api, rest);
      case 'watch':
        return watch(api, rest);
      case 'metrics':
        return metrics(api, rest);
      case 'list':
        return list(api, rest);
      case 'cancel':
        return cancel(api, rest);
      default:
        throw new CliError(`unknown subcommand '${sub ?? ''}'\n\n${usage}`, ExitCode.usage);
    }
  },
});
