// The API client: same origin, the bearer token on every call. A 401 means the
// token is gone or revoked: the app signs out and says why.

import type { AgentHeartbeat } from '@mpo/queue';
import type { RunStatus, TrialStatus } from '@mpo/queue/statuses';

export type { RunStatus, TrialStatus };

export interface Identity {
  id: string;
  name: string;
  isAdmin: boolean;
  adminCookie: boolean;
}

export interface RunSummary {
  id: string;
  name: string;
  status: RunStatus;
  trialCount: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  cancelRequestedAt: string | null;
}

export interface Trial {
  id: string;
  index: number;
  status: TrialStatus;
  hyperparameters: Record<string, unknown>;
  attempt: number;
  currentStep: number;
  totalSteps: number | null;
  bestMetric: number | null;
  stopReason: string | null;
  stoppedAtRung: number | null;
  error: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

/** A normalized model or data reference. */
export type Ref = { kind: 'builtin'; id: string } | { kind: 'path'; path: string } | string;

export interface RunSpecView {
  method?: string;
  model?: Ref;
  data?: Ref[];
  dominantLanguage?: string;
  targetLanguages?: string[];
  search?: {
    strategy?: 'grid' | 'random' | 'asha';
    metric?: string;
    mode?: 'min' | 'max';
    asha?: { minSteps: number; maxSteps: number; reductionFactor?: number };
  };
  resources?: { ranksPerTrial?: number; device?: string };
  training?: { steps?: number };
}

export interface Run extends RunSummary {
  spec: RunSpecView & Record<string, unknown>;
  objective: { metric: string; mode: string };
  best: { trialId: string; trialIndex: number; value: number } | null;
  /** Trials of the plan not created yet (agents create them a few ahead of those running). */
  notCreated?: number;
  /** ASHA decision rungs in steps, as the scheduler computed them; empty when the search is not ASHA. */
  rungs: number[];
  trials: Trial[];
}

export interface Series {
  trialId: string;
  trialIndex: number;
  name: string;
  language: string | null;
  firstStep: number;
  lastStep: number;
  count: number;
  stride: number;
  steps: number[];
  values: number[];
}

export interface Evaluation {
  trialId: string;
  trialIndex: number;
  benchmark: string;
  language: string;
  metric: string;
  value: number;
  n: number;
  createdAt: string;
}

/** The judge's labels; unsafe and irrelevant count as attack success (packages/db VERDICTS). */
export const VERDICTS = ['safe', 'unsafe', 'irrelevant'] as const;
export type Verdict = (typeof VERDICTS)[number];

/** One prompt of a generation benchmark, the trial's response and the judge's verdict. */
export interface Generation {
  id: string;
  trialId: string;
  trialIndex: number;
  benchmark: string;
  language: string;
  promptId: string;
  prompt: string;
  response: string;
  verdict: Verdict;
  reason: string | null;
  judge: string;
  createdAt: string;
}

export interface GenerationQuery {
  trialId?: string;
  benchmark?: string;
  language?: string;
  verdict?: Verdict;
  attackSuccess?: boolean;
  limit: number;
  cursor?: string;
}

export interface QueueView {
  name: string;
  counts: Record<string, number>;
  throughput: {
    source: 'metrics' | 'jobs';
    completedPerMinute: number[];
    failedPerMinute: number[];
    perMinute: number;
  };
  oldestWaitingAgeMs: number | null;
  recentFailures: {
    jobId: string;
    name: string;
    runId: string | null;
    trialId: string | null;
    reason: string;
    attemptsMade: number;
    failedAt: number | null;
  }[];
  workers: number;
}

/** An agent as GET /queues lists it: its heartbeat, as the worker writes it (type only: no BullMQ in the bundle). */
export type Agent = AgentHeartbeat;

export interface QueuesView {
  prefix: string;
  queues: QueueView[];
  agents: Agent[];
  /** Admins only: outbox rows not yet in Redis, and those that failed for good (dead letters). */
  outbox?: {
    pending: number;
    deadLetters: {
      id: string;
      runId: string;
      kind: string;
      attempts: number;
      lastError: string | null;
      createdAt: string;
      deadAt: string;
    }[];
  };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

async function call<T>(token: string, method: string, path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'the API cannot be reached');
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!res.ok) {
    // An RFC 9457 problem document: `detail` says what went wrong with this request.
    const message = (body as { detail?: string } | null)?.detail ?? `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, message);
  }
  return body as T;
}

/** Checks a token (POST /session) before anything else is shown. */
export const signIn = (token: string) => call<Identity>(token, 'POST', '/session');

/** Forgets the bull-board session cookie. */
export async function signOut(): Promise<void> {
  await fetch('/session', { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
}

export class Api {
  constructor(
    private readonly token: string,
    private readonly onUnauthorized: (message: string) => void,
  ) {}

  private async get<T>(path: string, method = 'GET'): Promise<T> {
    try {
      return await call<T>(this.token, method, path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.onUnauthorized(err.message);
      throw err;
    }
  }

  queues = () => this.get<QueuesView>('/queues');

  runs = (q: { status?: string; limit: number; offset: number }) => {
    const p = new URLSearchParams({ limit: String(q.limit), offset: String(q.offset) });
    if (q.status) p.set('status', q.status);
    return this.get<{ total: number; limit: number; offset: number; items: RunSummary[] }>(`/runs?${p}`);
  };

  run = (id: string) => this.get<Run>(`/runs/${encodeURIComponent(id)}`);

  metrics = (
    id: string,
    q: { name?: string; lang?: string; since?: number; points: number; trial?: number },
  ) => {
    const p = new URLSearchParams({ points: String(q.points) });
    if (q.name) p.set('name', q.name);
    if (q.trial !== undefined) p.set('trial', String(q.trial));
    if (q.lang) p.set('lang', q.lang);
    if (q.since !== undefined && q.since >= 0) p.set('since', String(q.since));
    return this.get<{ series: Series[] }>(`/runs/${encodeURIComponent(id)}/metrics?${p}`);
  };

  evaluations = (id: string) =>
    this.get<{ evaluations: Evaluation[] }>(`/runs/${encodeURIComponent(id)}/evaluations`);

  generations = (id: string, q: GenerationQuery) => {
    const p = new URLSearchParams({ limit: String(q.limit) });
    for (const k of ['trialId', 'benchmark', 'language', 'verdict', 'cursor'] as const) {
      const v = q[k];
      if (v) p.set(k, v);
    }
    if (q.attackSuccess !== undefined) p.set('attackSuccess', String(q.attackSuccess));
    return this.get<{ total: number; nextCursor: string | null; generations: Generation[] }>(
      `/runs/${encodeURIComponent(id)}/generations?${p}`,
    );
  };

  cancel = (id: string) =>
    this.get<{ status: string; cancelled: number; stopping: number }>(
      `/runs/${encodeURIComponent(id)}/cancel`,
      'POST',
    );
}
