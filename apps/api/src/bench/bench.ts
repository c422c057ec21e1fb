// API benchmarks (issue 6, item 8): p50/p99 latency of POST /runs and of
// GET /runs/:id/metrics?points=500 on a run holding 1,000,000 metric rows.
//
//   npm run bench -w @mpo/api [-- --duration 10 --connections 1,4 --rows 1000000 --json]
//
// The API runs as its own process (`node dist/main.js`, LOG_LEVEL=warn) on a
// fresh queue prefix; autocannon drives it from this process. The metric rows
// are written by Postgres itself (INSERT … SELECT generate_series), not through
// the API. Everything the bench creates (runs, token, Redis keys) is removed.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDb } from '@mpo/db';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '1,4' },
    rows: { type: 'string', default: '1000000' },
    json: { type: 'boolean', default: false },
  },
});
const duration = Number(values.duration);
const connectionCounts = values.connections.split(',').map(Number);
const totalRows = Number(values.rows);
const TRIALS = 4;
const SERIES: Array<[string, string | null]> = [
  ['loss', null],
  ['gradNorm', null],
  ['rg', 'zh'],
  ['rg', 'ko'],
  ['rg', 'ar'],
];
const stepsPerSeries = Math.ceil(totalRows / (TRIALS * SERIES.length));

const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const base = mkdtempSync(join(tmpdir(), 'mpo-bench-'));
mkdirSync(join(base, 'models', 'llama-1b'), { recursive: true });
mkdirSync(join(base, 'data'), { recursive: true });
writeFileSync(join(base, 'data', 'mpo.json'), '[]');
const prefix = `mpo-bench-${randomUUID().slice(0, 8)}`;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const db = createDb();
const { secret, identity } = await db.tokens.issue('bench');
const auth = { authorization: `Bearer ${secret}` };
const port = await freePort();
const server = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js')], {
  env: {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    MPO_QUEUE_PREFIX: prefix,
    MPO_MODEL_ROOT: join(base, 'models'),
    MPO_DATA_ROOT: join(base, 'data'),
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const url = `http://127.0.0.1:${port}`;

async function cleanup() {
  // Let the server finish what it is doing and exit before its rows go.
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
  const { items } = await db.runs.list({ ownerTokenId: identity.id, limit: 100_000 });
  for (const r of items) await db.runs.delete(r.id);
  await db.tokens.revoke(identity.id);
  await db.close();
  const redis = new Redis(redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

const spec = {
  name: 'bench',
  model: 'llama-1b',
  data: 'mpo.json',
  dominantLanguage: 'en',
  targetLanguages: ['zh', 'ko', 'ar'],
  method: 'mpo',
  search: {
    strategy: 'grid',
    space: { beta: [0.5, 1, 1.5], 'training.learningRate': [1e-6, 5e-6] },
    metric: 'heldout/reward_gap',
    mode: 'max',
  },
  resources: { ranksPerTrial: 2, device: 'cpu' },
  eval: { benchmarks: ['reward-gap', 'multijail'] },
  training: { maxSteps: 300, batchSize: 8, microBatchSize: 2, checkpointEvery: 100 },
};

interface Figure {
  what: string;
  connections: number;
  seconds: number;
  requests: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  non2xx: number;
  errors: number;
}

async function measure(what: string, opts: autocannon.Options, connections: number): Promise<Figure> {
  // Warm-up (V8, connection pools, Postgres caches), then the measured run.
  await autocannon({ ...opts, url: opts.url, duration: 2, connections });
  const r = await autocannon({ ...opts, duration, connections });
  const fig = {
    what,
    connections,
    seconds: duration,
    requests: r.requests.total,
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    non2xx: r.non2xx,
    errors: r.errors,
  };
  log(
    `${what}: p50 ${fig.p50} ms, p99 ${fig.p99} ms, ${fig.rps} req/s (${fig.requests} requests, ${fig.non2xx} non-2xx)`,
  );
  return fig;
}

try {
  // Wait for the server.
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      if (i > 100) throw new Error('API did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  log(`seeding ${TRIALS} trials × ${SERIES.length} series × ${stepsPerSeries} steps`);
  const { run } = await db.runs.create({
    name: 'bench-metrics',
    spec: { search: { metric: 'loss', mode: 'min' } },
    ownerTokenId: identity.id,
    trials: Array.from({ length: TRIALS }, () => ({ hyperparameters: {} })),
  });
  const t0 = Date.now();
  let seeded = 0;
  for (const trial of run.trials)
    for (const [name, language] of SERIES)
      seeded += await db.metrics.generateSynthetic({
        trialId: trial.id,
        name,
        language,
        steps: stepsPerSeries,
      });
  await db.metrics.analyze();
  log(`seeded ${seeded} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const figures: Figure[] = [];
  const scenarios: Array<[string, autocannon.Options]> = [
    [
      `GET /runs/:id/metrics?points=500 (${seeded} rows, all ${TRIALS * SERIES.length} series)`,
      { url: `${url}/runs/${run.id}/metrics?points=500`, headers: auth },
    ],
    [
      `GET /runs/:id/metrics?points=500&trial=0&name=loss (one series of ${stepsPerSeries} rows)`,
      { url: `${url}/runs/${run.id}/metrics?points=500&trial=0&name=loss`, headers: auth },
    ],
    [
      'POST /runs (6-trial grid: validate, plan, commit run+trials+outbox, publish flow)',
      {
        url: `${url}/runs`,
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(spec),
      },
    ],
  ];
  for (const [what, opts] of scenarios)
    for (const c of connectionCounts) figures.push(await measure(what, opts, c));
  const machine = `${cpus().length} cores, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')} at the end`;
  log(machine);
  if (values.json) process.stdout.write(`${JSON.stringify({ rows: seeded, machine, figures })}\n`);
  else {
    process.stdout.write('| request | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx |\n');
    process.stdout.write('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n');
    for (const f of figures)
      process.stdout.write(
        `| ${f.what} | ${f.connections} | ${f.rps} | ${f.p50} | ${f.p90} | ${f.p99} | ${f.max} | ${f.non2xx} |\n`,
      );
  }
} finally {
  await cleanup();
}
