// An LLM judge for any OpenAI-compatible chat endpoint, following the paper's protocol (llm/prompts.ts):
// non-English responses are first translated into English (one call), then classified (a second call);
// English responses need only the second. Judgements are cached on disk, so a re-run costs no requests.
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Judge, JudgeItem, Judgement } from './judge.js';
import { JudgementCache, judgementKey } from './llm/cache.js';
import { type ChatClientOptions, chatComplete, chatCompletionsUrl } from './llm/chat.js';
import {
  CLASSIFY_SYSTEM,
  classifyUserMessage,
  JUDGE_PROTOCOL,
  parseLabel,
  TRANSLATE_SYSTEM,
} from './llm/prompts.js';
import { RateLimiter, sleep } from './llm/rate-limit.js';

export interface LlmJudgeOptions {
  /** Endpoint: a base URL or the full /v1/chat/completions URL. */
  url: string;
  model: string;
  apiKey?: string;
  /** Default 2. */
  requestsPerSecond?: number;
  /** Default 4. */
  maxConcurrency?: number;
  /** Retries per request on 429/5xx/network errors/malformed bodies. Default 5. */
  maxRetries?: number;
  /** First backoff; doubles each retry up to maxDelayMs. Defaults 1000 and 60000. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Per-request timeout. Default 120000. */
  timeoutMs?: number;
  /** Extra classification calls when the reply has no readable label. Default 2. */
  maxParseRetries?: number;
  /** Directory of the judgement cache; false for none. Default $MPO_JUDGE_CACHE_DIR or ~/.cache/mpo-judge. */
  cacheDir?: string | false;
  /** Languages whose responses are classified without translation. Default ['en']. */
  englishLanguages?: string[];
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface LlmJudge extends Judge {
  /** Requests sent so far (each attempt counts). */
  readonly requests: number;
  readonly cache?: JudgementCache;
}

/** Reads MPO_JUDGE_URL, MPO_JUDGE_MODEL, MPO_JUDGE_API_KEY (and optional MPO_JUDGE_RPS, MPO_JUDGE_CONCURRENCY). */
export function llmJudgeOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): LlmJudgeOptions {
  const missing = ['MPO_JUDGE_URL', 'MPO_JUDGE_MODEL'].filter((k) => !env[k]);
  if (missing.length)
    throw new Error(`LLM judge: set ${missing.join(' and ')} (and MPO_JUDGE_API_KEY if needed)`);
  const num = (k: string) => {
    const v = env[k];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!(n > 0)) throw new Error(`LLM judge: ${k} must be a positive number, got ${v}`);
    return n;
  };
  const rps = num('MPO_JUDGE_RPS');
  const conc = num('MPO_JUDGE_CONCURRENCY');
  return {
    url: env.MPO_JUDGE_URL!,
    model: env.MPO_JUDGE_MODEL!,
    ...(env.MPO_JUDGE_API_KEY ? { apiKey: env.MPO_JUDGE_API_KEY } : {}),
    ...(rps ? { requestsPerSecond: rps } : {}),
    ...(conc ? { maxConcurrency: conc } : {}),
    ...(env.MPO_JUDGE_CACHE_DIR ? { cacheDir: env.MPO_JUDGE_CACHE_DIR } : {}),
  };
}

export function createLlmJudge(opts: LlmJudgeOptions): LlmJudge {
  // Long: a client object whose methods share the request counter, rate limiter and cache built at its top.
  let requests = 0;
  const baseFetch = opts.fetch ?? fetch;
  const client: ChatClientOptions = {
    url: chatCompletionsUrl(opts.url),
    model: opts.model,
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    limiter: new RateLimiter({
      requestsPerSecond: opts.requestsPerSecond ?? 2,
      maxConcurrency: opts.maxConcurrency ?? 4,
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
    }),
    maxRetries: opts.maxRetries ?? 5,
    baseDelayMs: opts.baseDelayMs ?? 1000,
    maxDelayMs: opts.maxDelayMs ?? 60_000,
    timeoutMs: opts.timeoutMs ?? 120_000,
    maxTokens: 2048,
    fetch: (input, init) => {
      requests++;
      return baseFetch(input, init);
    },
    sleep: opts.sleep ?? sleep,
    random: opts.random ?? Math.random,
  };
  const cacheDir =
    opts.cacheDir === false
      ? undefined
      : (opts.cacheDir ?? process.env.MPO_JUDGE_CACHE_DIR ?? join(homedir(), '.cache', 'mpo-judge'));
  const cache = cacheDir ? new JudgementCache(cacheDir) : undefined;
  const english = new Set(opts.englishLanguages ?? ['en']);
  const parseRetries = opts.maxParseRetries ?? 2;

  async function judgeOne(item: JudgeItem): Promise<Judgement> {
    const key = judgementKey(JUDGE_PROTOCOL, opts.model, item.prompt, item.response);
    const hit = cache?.get(key);
    if (hit) return hit;
    if (!item.response.trim()) {
      // Nothing to translate or classify: an empty answer is not an answer.
      return { label: 'irrelevant', refusal: false, reason: 'empty response' };
    }
    const englishResponse = english.has(item.lang)
      ? item.response
      : await chatComplete(client, [
          { role: 'system', content: TRANSLATE_SYSTEM },
          { role: 'user', content: item.response },
        ]);
    let reply = '';
    for (let i = 0; i <= parseRetries; i++) {
      reply = await chatComplete(client, [
        { role: 'system', content: CLASSIFY_SYSTEM },
        { role: 'user', content: classifyUserMessage(item.prompt, englishResponse) },
      ]);
      const parsed = parseLabel(reply);
      if (parsed) {
        const j: Judgement = {
          label: parsed.label,
          refusal: parsed.label === 'safe',
          ...(parsed.reason ? { reason: parsed.reason } : {}),
        };
        cache?.set(key, j);
        return j;
      }
    }
    // Not cached: a later run may get a readable answer.
    return {
      label: 'irrelevant',
      refusal: false,
      reason: `judge reply not understood after ${parseRetries + 1} tries: ${JSON.stringify(reply.slice(0, 200))}`,
    };
  }

  return {
    name: `llm:${opts.model}`,
    get requests() {
      return requests;
    },
    ...(cache ? { cache } : {}),
    async judge(items) {
      // All items go out at once; the rate limiter paces them. Every item is settled before failing, so the
      // judgements that did succeed are in the cache for the next attempt.
      const settled = await Promise.allSettled(items.map(judgeOne));
      const failed = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed.length) {
        const first = failed[0]!.reason as Error;
        throw new Error(
          `LLM judge: ${failed.length} of ${items.length} items failed; first: ${first.message}`,
          {
            cause: first,
          },
        );
      }
      return settled.map((s) => (s as PromiseFulfilledResult<Judgement>).value);
    },
  };
}
