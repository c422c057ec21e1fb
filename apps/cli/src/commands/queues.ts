import { parseArgs } from 'node:util';
import type { JobState } from '@mpo/queue';
import { API_FLAGS, ApiClient } from '../api-client.js';
import { formatDuration } from '../progress.js';
import { register } from '../registry.js';

interface QueuesView {
  queues: {
    name: string;
    counts: Record<string, number>;
    throughput: { perMinute: number };
    oldestWaitingAgeMs: number | null;
    recentFailures: { jobId: string; reason: string }[];
  }[];
  agents?: { id: string; host: string; slots: { device: string; total: number; free: number }[] }[];
}

register({
  name: 'queues',
  summary:
    'queue health: jobs by state, throughput, oldest waiting job, failures, worker agents and their slots',
  usage: 'mpo queues [--json] [--api URL] [--token T]',
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...API_FLAGS, json: { type: 'boolean', default: false } },
    });
    const api = new ApiClient({
      ...(values.api ? { url: values.api } : {}),
      ...(values.token ? { token: values.token } : {}),
    });
    const view = await api.get<QueuesView>('/queues');
    if (values.json) {
      process.stdout.write(`${JSON.stringify(view)}\n`);
      return 0;
    }
    // The states worth a column in a terminal (JOB_STATES has them all).
    const states: readonly JobState[] = ['waiting', 'active', 'delayed', 'completed', 'failed'];
    process.stdout.write(
      `${'queue'.padEnd(12)}${states.map((s) => s.padStart(10)).join('')}  ${'per min'.padStart(8)}  oldest waiting\n`,
    );
    for (const q of view.queues) {
      const age = q.oldestWaitingAgeMs === null ? '-' : formatDuration(q.oldestWaitingAgeMs / 1000);
      process.stdout.write(
        `${q.name.padEnd(12)}${states.map((s) => String(q.counts[s] ?? 0).padStart(10)).join('')}  ${q.throughput.perMinute.toFixed(1).padStart(8)}  ${age}\n`,
      );
      for (const f of q.recentFailures.slice(0, 3))
        process.stdout.write(`    failed ${f.jobId}: ${f.reason.split('\n')[0]}\n`);
    }
    for (const a of view.agents ?? []) {
      process.stdout.write(
        `agent ${a.id} on ${a.host}: ${a.slots.map((s) => `${s.device} ${s.total - s.free}/${s.total} busy`).join(', ')}\n`,
      );
    }
    return 0;
  },
});
