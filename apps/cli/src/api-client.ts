// A small client for the control plane's HTTP API. Token and URL come from
// flags or the environment (MPO_API_URL, MPO_TOKEN, falling back to
// MPO_ADMIN_TOKEN). Every failure becomes a CliError with a distinct exit code.
import { CliError, ExitCode } from './exit-codes.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:3000';

export interface ApiOptions {
  url?: string;
  token?: string;
}

export const API_FLAGS = {
  api: { type: 'string' as const },
  token: { type: 'string' as const },
};

export class ApiClient {
  readonly url: string;
  private readonly token: string | undefined;

  constructor(opts: ApiOptions = {}) {
    this.url = (opts.url ?? process.env.MPO_API_URL ?? DEFAULT_API_URL).replace(/\/+$/, '');
    this.token = opts.token ?? process.env.MPO_TOKEN ?? process.env.MPO_ADMIN_TOKEN;
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    if (!this.token) {
      throw new CliError('no API token: pass --token or set MPO_TOKEN', ExitCode.unauthorized);
    }
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new CliError(`cannot reach the API at ${this.url} (${cause})`, ExitCode.unavailable);
    }
    const text = await res.text();
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // keep the text
    }
    if (res.ok) return data as T;
    throw new CliError(describeError(res.status, data, `${method} ${path}`), exitCodeFor(res.status));
  }

  get<T>(path: string) {
    return this.request<T>('GET', path);
  }
}

export function exitCodeFor(status: number): ExitCode {
  if (status === 400 || status === 413 || status === 422) return ExitCode.invalidInput;
  if (status === 401 || status === 403) return ExitCode.unauthorized;
  if (status === 404) return ExitCode.notFound;
  if (status === 503 || status === 502 || status === 504) return ExitCode.unavailable;
  return ExitCode.failure;
}

/** An RFC 9457 problem document (the API's error shape): its detail, then every problem on its own line. */
function describeError(status: number, data: unknown, what: string): string {
  const d = (data ?? {}) as {
    detail?: string;
    title?: string;
    problems?: { path: string; reason: string }[];
  };
  const problems = Array.isArray(d.problems)
    ? d.problems.map((p) => `\n  ${p.path || '(root)'}: ${p.reason}`).join('')
    : '';
  const msg = d.detail ?? d.title ?? (typeof data === 'string' ? data : '');
  return `${what} → ${status}${msg ? `: ${msg}` : ''}${problems}`;
}
