// pino JSON logs. Every line of a job carries runId, trialId and jobId (child
// loggers made with `jobLogger`), so one trial can be followed across agents.
import { type Logger, pino } from 'pino';

export type { Logger };

/** Judge keys and credentials never reach the logs (a logged config, env or error object). */
export const REDACTED_PATHS = [
  'apiKey',
  '*.apiKey',
  '*.MPO_JUDGE_API_KEY',
  '*.DATABASE_URL',
  '*.authorization',
];

export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  destination?: NodeJS.WritableStream,
): Logger {
  const options = {
    level,
    base: { service: 'worker', ...bindings },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

export function jobLogger(
  log: Logger,
  job: { id?: string | undefined; queueName: string; data: unknown },
): Logger {
  const data = (job.data ?? {}) as { runId?: unknown; trialId?: unknown };
  return log.child({
    jobId: job.id,
    queue: job.queueName,
    ...(typeof data.runId === 'string' ? { runId: data.runId } : {}),
    ...(typeof data.trialId === 'string' ? { trialId: data.trialId } : {}),
  });
}
