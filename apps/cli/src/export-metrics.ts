// `mpo runs metrics RUN --format csv|jsonl|parquet`: every stored metric row
// of a run (not the downsampled chart view). The series come from
// GET /runs/:id/metrics (one point each, for their names), their rows from
// GET /runs/:id/metrics/rows page by page.
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { ApiClient } from './api-client.js';

export const EXPORT_FORMATS = ['csv', 'jsonl', 'parquet'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** One exported row; the same columns, in this order, in every format. */
export interface MetricExportRow {
  trial: number;
  trial_id: string;
  name: string;
  language: string | null;
  step: number;
  value: number;
  time: string;
}

export const EXPORT_COLUMNS = ['trial', 'trial_id', 'name', 'language', 'step', 'value', 'time'] as const;

export interface ExportFilter {
  trial?: string | undefined;
  name?: string | undefined;
  lang?: string | undefined;
}

interface SeriesInfo {
  trialId: string;
  trialIndex: number;
  name: string;
  language: string | null;
}

const PAGE = 10_000;

export async function fetchRunRows(
  api: ApiClient,
  runId: string,
  filter: ExportFilter = {},
): Promise<MetricExportRow[]> {
  const run = encodeURIComponent(runId);
  const q = new URLSearchParams({ points: '1' });
  for (const k of ['trial', 'name', 'lang'] as const) if (filter[k]) q.set(k, filter[k]!);
  const { series } = await api.get<{ series: SeriesInfo[] }>(`/runs/${run}/metrics?${q}`);
  const out: MetricExportRow[] = [];
  for (const s of series) {
    for (let since: number | null = -1; since !== null; ) {
      const page = new URLSearchParams({
        trial: s.trialId,
        name: s.name,
        since: String(since),
        limit: String(PAGE),
      });
      if (s.language !== null) page.set('lang', s.language);
      const res: { rows: { step: number; value: number; time: string }[]; next: number | null } =
        await api.get(`/runs/${run}/metrics/rows?${page}`);
      for (const r of res.rows)
        out.push({ trial: s.trialIndex, trial_id: s.trialId, name: s.name, language: s.language, ...r });
      since = res.next;
    }
  }
  return out;
}

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
const csvField = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

export function toCsv(rows: readonly MetricExportRow[]): string {
  const lines = [EXPORT_COLUMNS.join(',')];
  for (const r of rows) lines.push(EXPORT_COLUMNS.map((c) => csvField(r[c])).join(','));
  return `${lines.join('\n')}\n`;
}

export function toJsonl(rows: readonly MetricExportRow[]): string {
  return rows.map((r) => `${JSON.stringify(r, EXPORT_COLUMNS as unknown as string[])}\n`).join('');
}

/** Parquet (hyparquet-writer): value as DOUBLE, time as TIMESTAMP_MILLIS, language nullable. */
export function toParquet(rows: readonly MetricExportRow[]): Uint8Array {
  const col = <K extends keyof MetricExportRow>(k: K) => rows.map((r) => r[k]);
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'trial', data: col('trial'), type: 'INT32', nullable: false },
      { name: 'trial_id', data: col('trial_id'), type: 'STRING', nullable: false },
      { name: 'name', data: col('name'), type: 'STRING', nullable: false },
      { name: 'language', data: col('language'), type: 'STRING' },
      { name: 'step', data: col('step'), type: 'INT32', nullable: false },
      { name: 'value', data: col('value'), type: 'DOUBLE', nullable: false },
      {
        name: 'time',
        data: rows.map((r) => new Date(r.time)),
        type: 'TIMESTAMP',
        nullable: false,
      },
    ],
    kvMetadata: [{ key: 'mpo.columns', value: EXPORT_COLUMNS.join(',') }],
    createdBy: 'mpo runs metrics',
  });
  return new Uint8Array(buf);
}

export function encodeRows(rows: readonly MetricExportRow[], format: ExportFormat): string | Uint8Array {
  if (format === 'csv') return toCsv(rows);
  if (format === 'jsonl') return toJsonl(rows);
  return toParquet(rows);
}
