// A minimal client for OpenAI-compatible `POST /v1/chat/completions`, with retries: 429, 5xx, network errors,
// timeouts and malformed bodies are retried with exponential backoff (honouring Retry-After); other statuses
// (400, 401, 404, …) are configuration errors and fail at once.
import { errorMessage } from '@mpo/util';
import type { RateLimiter } from './rate-limit.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatClientOptions {
  /** Full endpoint URL (see chatCompletionsUrl). */
  url: string;
  model: string;
  apiKey?: string;
  limiter: RateLimiter;
  maxRetries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  maxTokens: number;
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

export class ChatError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ChatError';
  }
}

/** Accepts a base URL (`https://host`, `https://host/v1`) or the full `/chat/completions` URL. */
export function chatCompletionsUrl(url: string): string {
  const u = url.replace(/\/+$/, '');
  if (/\/chat\/completions$/.test(u)) return u;
  if (/\/v\d+$/.test(u)) return `${u}/chat/completions`;
  return `${u}/v1/chat/completions`;
}

class Retryable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const s = Number(header);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

async function once(o: ChatClientOptions, messages: ChatMessage[]): Promise<string> {
  let res: Response;
  try {
    res = await o.fetch(o.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}),
      },
      body: JSON.stringify({ model: o.model, messages, temperature: 0, max_tokens: o.maxTokens }),
      signal: AbortSignal.timeout(o.timeoutMs),
    });
  } catch (e) {
    throw new Retryable(`network error: ${errorMessage(e)}`);
  }
  const text = await res.text().catch((e: Error) => {
    throw new Retryable(`reading the body failed: ${e.message}`);
  });
  if (res.status === 429 || res.status >= 500) {
    throw new Retryable(
      `HTTP ${res.status}: ${text.slice(0, 200)}`,
      retryAfterMs(res.headers.get('retry-after')),
    );
  }
  if (!res.ok) throw new ChatError(`HTTP ${res.status} from ${o.url}: ${text.slice(0, 500)}`, res.status);
  let body: { choices?: Array<{ message?: { content?: unknown } }> };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Retryable(`response is not JSON: ${text.slice(0, 200)}`);
  }
  const content = body.choices?.[0]?.message?.content;
  if (typeof content !== 'string')
    throw new Retryable(`no choices[0].message.content in ${text.slice(0, 200)}`);
  return content;
}

/** One chat completion, retried as described above; throws ChatError when it gives up. */
export async function chatComplete(o: ChatClientOptions, messages: ChatMessage[]): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await o.limiter.run(() => once(o, messages));
    } catch (e) {
      if (!(e instanceof Retryable)) throw e;
      if (attempt >= o.maxRetries) {
        throw new ChatError(`giving up after ${attempt + 1} attempts: ${e.message}`);
      }
      // Exponential backoff with ±20% jitter so that parallel requests do not retry in lockstep.
      const backoff = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** attempt) * (0.8 + 0.4 * o.random());
      await o.sleep(Math.min(o.maxDelayMs, Math.max(backoff, e.retryAfterMs ?? 0)));
    }
  }
}
