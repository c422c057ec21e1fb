// One error shape for every failure: an RFC 9457 problem document
// (application/problem+json) with `type`, `title`, `status`, `detail` and, as
// an extension member, `problems[]` (every problem found, each with its path).
// Validation → 400 with every problem; unknown ids → 404; Redis or Postgres
// unreachable → 503 with Retry-After (the client may retry, with the same
// Idempotency-Key, and nothing was half-written).
import { InvalidInputError, NotFoundError } from '@mpo/db';
import { type Problem, ProblemsError, pointerToPath } from '@mpo/queue';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    /** Sent as Retry-After (seconds): when the client may try again (429, 503). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** A dependency (Redis, Postgres) is unreachable. */
export class UnavailableError extends Error {
  readonly statusCode = 503;
  constructor(
    readonly dependency: 'redis' | 'postgres',
    options?: { cause?: unknown },
  ) {
    super(`${dependency === 'redis' ? 'Redis' : 'Postgres'} is unreachable; retry later`, options);
    this.name = 'UnavailableError';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);
// Prisma: can't reach server, connection closed, pool timeout, socket timeout.
const PRISMA_UNAVAILABLE = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);
// Postgres SQLSTATE: connection exceptions (08xxx), shutting down / starting up (57P0x).
const PG_UNAVAILABLE = /^(08|57P0)/;
const REDIS_DOWN =
  /Stream isn't writeable|Connection is closed|enableOfflineQueue|max retries per request|MaxRetriesPerRequest|Command timed out/i;
const PG_DOWN =
  /timeout exceeded when trying to connect|Connection terminated|Can't reach database|connect ECONNREFUSED/i;

/** Which dependency, if any, an error says is unreachable (walks the cause chain). */
export function unavailableDependency(err: unknown): 'redis' | 'postgres' | null {
  for (let e = err as Record<string, unknown> | undefined, depth = 0; e && depth < 8; depth++) {
    if (e instanceof UnavailableError) return e.dependency;
    const name = String(e.name ?? '');
    const message = String(e.message ?? '');
    const code = String(e.code ?? '');
    if (name === 'MaxRetriesPerRequestError' || REDIS_DOWN.test(message)) return 'redis';
    if (PRISMA_UNAVAILABLE.has(code) || PG_UNAVAILABLE.test(code) || PG_DOWN.test(message)) return 'postgres';
    if (
      name.startsWith('PrismaClient') &&
      /DatabaseNotReachable|ConnectionClosed|SocketTimeout/.test(message)
    )
      return 'postgres';
    if (NETWORK_CODES.has(code)) return /6379|redis/i.test(message) ? 'redis' : 'postgres';
    e = (e.cause as Record<string, unknown> | undefined) ?? undefined;
  }
  return null;
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Fastify's (ajv's) validation errors as our problems, e.g. "querystring.points: must be <= 10000". */
export function ajvProblems(errors: AjvError[], context: string): Problem[] {
  return errors.map((e) => {
    let path = pointerToPath(e.instancePath);
    if (e.keyword === 'required')
      path = path ? `${path}.${e.params.missingProperty}` : String(e.params.missingProperty);
    if (e.keyword === 'additionalProperties')
      path = path ? `${path}.${e.params.additionalProperty}` : String(e.params.additionalProperty);
    const reason =
      e.keyword === 'required'
        ? 'required'
        : e.keyword === 'additionalProperties'
          ? 'unknown field'
          : (e.message ?? e.keyword);
    return { path: path ? `${context}.${path}` : context, reason };
  });
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/**
 * Problem types (RFC 9457 §3.1.1). `about:blank` means "no more than the HTTP
 * status says" (its title is the status phrase); the others are ours, URNs
 * because they name a kind of failure, not a page to fetch (listed in
 * apps/api/README.md).
 */
export const PROBLEM_TYPES = {
  blank: 'about:blank',
  invalidInput: 'urn:mpo:problem:invalid-input',
  unavailable: 'urn:mpo:problem:dependency-unavailable',
} as const;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  problems?: Problem[];
}

/** The problem document for a status: `detail` says what happened to this request. */
export function errorBody(
  status: number,
  detail: string,
  problems?: Problem[],
  type: string = problems ? PROBLEM_TYPES.invalidInput : PROBLEM_TYPES.blank,
): ProblemDocument {
  const title =
    type === PROBLEM_TYPES.invalidInput
      ? 'Invalid input'
      : type === PROBLEM_TYPES.unavailable
        ? 'A dependency is unavailable'
        : (STATUS_TEXT[status] ?? 'Error');
  return { type, title, status, detail, ...(problems ? { problems } : {}) };
}

function isProblemDocument(payload: unknown): payload is ProblemDocument {
  const p = payload as Partial<ProblemDocument> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.type === 'string' &&
    typeof p.status === 'number' &&
    typeof p.title === 'string'
  );
}

/**
 * preSerialization hook: a problem document leaves as application/problem+json
 * (RFC 9457 §3), whoever sent it (error handler, auth hook, a route).
 */
export async function problemContentType(_req: FastifyRequest, reply: FastifyReply, payload: unknown) {
  if (reply.statusCode >= 400 && isProblemDocument(payload))
    reply.type(`${PROBLEM_CONTENT_TYPE}; charset=utf-8`);
  return payload;
}

export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
  if (err instanceof ProblemsError) {
    return reply.code(400).send(errorBody(400, err.message, err.problems));
  }
  if (err.validation) {
    const problems = ajvProblems(err.validation as AjvError[], err.validationContext ?? 'request');
    return reply
      .code(400)
      .send(errorBody(400, problems.map((p) => `${p.path}: ${p.reason}`).join('; '), problems));
  }
  if (err instanceof NotFoundError) return reply.code(404).send(errorBody(404, err.message));
  if (err instanceof InvalidInputError) {
    return reply.code(400).send(errorBody(400, err.message, [{ path: err.path, reason: err.message }]));
  }
  if (err instanceof HttpError) {
    if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
    return reply.code(err.statusCode).send(errorBody(err.statusCode, err.message));
  }
  const dependency = unavailableDependency(err);
  if (dependency) {
    req.log.warn({ err, dependency }, 'dependency unavailable');
    return reply
      .code(503)
      .header('retry-after', '5')
      .send(errorBody(503, new UnavailableError(dependency).message, undefined, PROBLEM_TYPES.unavailable));
  }
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (status === 500) req.log.error({ err }, 'request failed');
  return reply.code(status).send(errorBody(status, status === 500 ? 'internal error' : err.message));
}
