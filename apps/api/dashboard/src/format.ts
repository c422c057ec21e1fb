// Numbers, durations and dates for people.

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export const ago = (t: number | string | null | undefined, now = Date.now()): string =>
  t === null || t === undefined ? '—' : `${duration(now - new Date(t).getTime())} ago`;

const pad = (n: number) => String(n).padStart(2, '0');

export function dateTime(t: number | string | null | undefined): string {
  if (t === null || t === undefined) return '—';
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function num(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined) return '—';
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export const percent = (v: number) => `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;

export function params(p: Record<string, unknown>): string {
  const entries = Object.entries(p);
  if (entries.length === 0) return '—';
  return entries
    .map(([k, v]) => `${k.replace(/^training\./, '')}=${typeof v === 'number' ? num(v) : JSON.stringify(v)}`)
    .join(', ');
}

/** `builtin:<id>` or the path of a normalized model/data reference. */
export function ref(r: { kind: string; id?: string; path?: string } | string | undefined): string {
  if (r === undefined) return '—';
  if (typeof r === 'string') return r;
  return r.kind === 'builtin' ? `builtin:${r.id}` : (r.path ?? JSON.stringify(r));
}
