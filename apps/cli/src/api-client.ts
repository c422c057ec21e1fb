// A small client for the control plane's HTTP API. Token and URL come from
// flags or the environment (MPO_API_URL, MPO_TOKEN, falling back to
// MPO_ADMIN_TOKEN). Every failure becomes a CliError with a distinct exit code.
import { errorMessage } from '@mpo/util';
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
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? errorMessage(err);
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
    throw new ApiError(res.status, data, `${method} ${path}`);
  }

  get<T>(path: string) {
    return this.request<T>('GET', path);
  }
}

type Problems = { path: string; reason: string }[];

/** A failed request: the message lists every problem; `problems` lets a caller name their lines in its file. */
export class ApiError extends CliError {
  readonly problems: Problems;
  constructor(
    readonly status: number,
    readonly data: unknown,
    readonly what: string,
  ) {
    super(describeError(status, data, what), exitCodeFor(status));
    const p = (data as { problems?: unknown } | null)?.problems;
    this.problems = Array.isArray(p) ? (p as Problems) : [];
  }

  /** The same message with each problem line replaced by `locate`'s (e.g. "file:line:col: path: reason"). */
  located(locate: (problems: Problems) => string[]): string {
    return describeError(this.status, { ...(this.data as object), problems: undefined }, this.what).concat(
      locate(this.problems)
        .map((l) => `\n  ${l}`)
        .join(''),
    );
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
    problems?: Problems;
  };
  const problems = Array.isArray(d.problems)
    ? d.problems.map((p) => `\n  ${p.path || '(root)'}: ${p.reason}`).join('')
    : '';
  const msg = d.detail ?? d.title ?? (typeof data === 'string' ? data : '');
  return `${what} → ${status}${msg ? `: ${msg}` : ''}${problems}`;
}
