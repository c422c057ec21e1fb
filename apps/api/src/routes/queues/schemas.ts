import { JOB_STATES } from '@mpo/queue';
import { Type } from '@sinclair/typebox';
import { errorResponses } from '../common.js';

const Slots = Type.Object({
  device: Type.String(),
  total: Type.Integer(),
  free: Type.Integer(),
  ids: Type.Optional(Type.Array(Type.String())),
});

export const QueueView = Type.Object({
  name: Type.String(),
  counts: Type.Record(Type.String(), Type.Integer(), {
    description: `jobs by state: ${JOB_STATES.join(', ')}`,
  }),
  throughput: Type.Object({
    source: Type.Union([Type.Literal('metrics'), Type.Literal('jobs')], {
      description:
        '"metrics": BullMQ per-minute metrics (workers run with metrics enabled); "jobs": counted from retained completed jobs',
    }),
    completedPerMinute: Type.Array(Type.Integer(), {
      description: 'newest first; [0] is the current minute so far',
    }),
    failedPerMinute: Type.Array(Type.Integer()),
    perMinute: Type.Number({ description: 'completed jobs per minute over the last 5 minutes' }),
  }),
  oldestWaitingAgeMs: Type.Union([Type.Integer(), Type.Null()]),
  recentFailures: Type.Array(
    Type.Object({
      jobId: Type.String(),
      name: Type.String(),
      runId: Type.Union([Type.String(), Type.Null()]),
      trialId: Type.Union([Type.String(), Type.Null()]),
      reason: Type.String(),
      attemptsMade: Type.Integer(),
      failedAt: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
  workers: Type.Integer({ description: 'BullMQ worker connections on this queue' }),
});

export const queuesSchema = {
  tags: ['queues'],
  summary: 'Queues and worker agents',
  description:
    "Counts and slots for every token; other owners' failures, agents' hosts, pids and jobs, and the outbox (pending rows and dead letters) for admins only.",
  response: {
    200: Type.Object({
      prefix: Type.String(),
      queues: Type.Array(QueueView),
      agents: Type.Array(
        Type.Object({
          id: Type.String(),
          host: Type.String(),
          pid: Type.Integer(),
          version: Type.String(),
          startedAt: Type.Integer(),
          lastSeen: Type.Integer(),
          queues: Type.Array(Type.String()),
          slots: Type.Array(Slots),
          running: Type.Array(
            Type.Object({
              queue: Type.String(),
              jobId: Type.String(),
              runId: Type.String(),
              trialId: Type.String(),
              slots: Type.Object({ device: Type.String(), count: Type.Integer() }),
              assigned: Type.Optional(Type.Array(Type.String())),
              startedAt: Type.Integer(),
            }),
          ),
        }),
      ),
      outbox: Type.Optional(
        Type.Object(
          {
            pending: Type.Integer({ description: 'rows committed but not yet published to Redis' }),
            deadLetters: Type.Array(
              Type.Object({
                id: Type.String(),
                runId: Type.String(),
                kind: Type.String(),
                attempts: Type.Integer(),
                lastError: Type.Union([Type.String(), Type.Null()]),
                createdAt: Type.String({ format: 'date-time' }),
                deadAt: Type.String({ format: 'date-time' }),
              }),
              {
                description:
                  'rows that failed permanently MPO_OUTBOX_MAX_ATTEMPTS times and are no longer retried',
              },
            ),
          },
          { description: 'admins only' },
        ),
      ),
    }),
    ...errorResponses,
  },
};
