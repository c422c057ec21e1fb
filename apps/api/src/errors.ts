// One error shape for every failure: {statusCode, error, message, problems?}.
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
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function errorBody(statusCode: number, message: string, problems?: Problem[]) {
  return {
    statusCode,
    error: STATUS_TEXT[statusCode] ?? 'Error',
    message,
    ...(problems ? { problems } : {}),
  };
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
  if (err instanceof HttpError)
    return reply.code(err.statusCode).send(errorBody(err.statusCode, err.message));
  const dependency = unavailableDependency(err);
  if (dependency) {
    req.log.warn({ err, dependency }, 'dependency unavailable');
    return reply
      .code(503)
      .header('retry-after', '5')
      .send(errorBody(503, new UnavailableError(dependency).message));
  }
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (status === 500) req.log.error({ err }, 'request failed');
  return reply.code(status).send(errorBody(status, status === 500 ? 'internal error' : err.message));
}
