// pino JSON logs. Every line of a job carries runId, trialId and jobId (child
// loggers made with `jobLogger`), so one trial can be followed across agents.
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { service: 'worker', ...bindings } });
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
