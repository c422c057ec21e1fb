// The CLI against a real API process (real Postgres and Redis): submit, watch,
// metrics --csv, queues, report, and the exit code of every kind of error.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createDb, type Db, type NewTrial } from '@mpo/db';
import { type RunSpec, trialRows } from '@mpo/queue';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { mpo, repoRoot, tmp, writeJson } from './helpers.js';

const token = `cli-test-${randomUUID()}`;
let api: ChildProcess;
let url: string;
let db: Db;
let env: NodeJS.ProcessEnv;

const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });

beforeAll(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  api = spawn(process.execPath, [join(repoRoot, 'apps/api/dist/main.js')], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      MPO_ADMIN_TOKEN: token,
      MPO_QUEUE_PREFIX: `mpo-cli-test-${randomUUID().slice(0, 8)}`,
      LOG_LEVEL: 'warn',
    },
    stdio: 'ignore',
  });
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  db = createDb();
  env = { MPO_API_URL: url, MPO_TOKEN: token };
});
afterAll(async () => {
  api?.kill('SIGTERM');
  await db?.close();
});

const spec = (over: Record<string, unknown> = {}) => ({
  name: `cli-${randomUUID().slice(0, 8)}`,
  model: 'builtin:tiny-multilingual',
  data: 'builtin:mpo-llama',
  dominantLanguage: 'en',
  targetLanguages: ['zh', 'sw'],
  method: 'mpo',
  search: { strategy: 'grid', space: { beta: [1, 1.5] }, metric: 'heldout/reward_gap_mean', mode: 'max' },
  eval: { benchmarks: ['multijail'] },
  training: { steps: 10 },
  ...over,
});

describe('mpo runs / queues / report against the API', () => {
  it('submits a run, exports its metrics as CSV, watches it to the end and reports it', async () => {
    const dir = tmp('api');
    const sub = await mpo(['runs', 'submit', writeJson(dir, 'spec.json', spec())], { env });
    expect(sub.stderr).toMatch(/2 trials queued/);
    // spec() still says training.steps: accepted, with the API's warning.
    expect(sub.stderr).toMatch(/warning: training\.steps: deprecated, use training\.maxSteps/);
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim();
    // The same spec as YAML, with --json: the API's answer.
    const yamlSpec = join(dir, 'spec.yaml');
    writeFileSync(yamlSpec, YAML.stringify(spec()));
    const subYaml = await mpo(['runs', 'submit', yamlSpec, '--json'], { env });
    expect(subYaml.code).toBe(0);
    expect(JSON.parse(subYaml.stdout)).toMatchObject({ id: expect.any(String), trialCount: 2 });
    // A YAML mistake names the file, line and column.
    writeFileSync(join(dir, 'broken.yaml'), 'name: x\ntraining:\n  steps: [1,\n');
    const broken = await mpo(['runs', 'submit', join(dir, 'broken.yaml')], { env });
    expect(broken.code).toBe(3);
    expect(broken.stderr).toMatch(/broken\.yaml:\d+:\d+: invalid YAML/);
    // Pages: newest first, --limit/--offset, the next offset in JSON and on stderr.
    const page1 = await mpo(['runs', 'list', '--limit', '1', '--json'], { env });
    const p1 = JSON.parse(page1.stdout);
    expect(p1).toMatchObject({ limit: 1, offset: 0, nextOffset: 1 });
    expect(p1.items.map((r: { id: string }) => r.id)).toEqual([JSON.parse(subYaml.stdout).id]);
    const page2 = await mpo(['runs', 'list', '--limit', '1', '--offset', '1'], { env });
    expect(page2.stdout).toContain(id);
    expect(page2.stderr).toMatch(new RegExp(`runs 2-2 of ${p1.total}`));
    // No agent runs here to create the trials after the first (they are created lazily): create them as one would.
    const plan = (await db.runs.spec(id)) as unknown as RunSpec;
    await db.runs.materialize(id, 'all', (from, to) => trialRows(plan, from, to) as NewTrial[]);
    const run = await db.runs.get(id);
    const [t0, t1] = run.trials.map((t) => t.id) as [string, string];
    await db.metrics.append([
      { trialId: t0, step: 1, name: 'loss', value: 0.5 },
      { trialId: t0, step: 2, name: 'loss', value: 0.25 },
      { trialId: t1, step: 1, name: 'rg', language: 'zh', value: 0.125 },
    ]);
    // Every stored row, in three formats with the same columns.
    const csv = await mpo(['runs', 'metrics', id, '--csv'], { env });
    expect(csv.code).toBe(0);
    const [header, ...lines] = csv.stdout.trim().split('\n');
    expect(header).toBe('trial,trial_id,name,language,step,value,time');
    expect(lines.map((l) => l.split(',').slice(0, 6).join(','))).toEqual([
      `0,${t0},loss,,1,0.5`,
      `0,${t0},loss,,2,0.25`,
      `1,${t1},rg,zh,1,0.125`,
    ]);
    for (const l of lines) expect(Date.parse(l.split(',')[6]!)).toBeGreaterThan(0);
    const jsonl = await mpo(['runs', 'metrics', id, '--format', 'jsonl', '--trial', '1'], { env });
    expect(jsonl.code).toBe(0);
    expect(
      jsonl.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([
      { trial: 1, trial_id: t1, name: 'rg', language: 'zh', step: 1, value: 0.125, time: expect.any(String) },
    ]);
    // Parquet, read back by hyparquet (a reader, not the writer we use).
    const pq = join(dir, 'metrics.parquet');
    const parquet = await mpo(['runs', 'metrics', id, '--format', 'parquet', '--out', pq], { env });
    expect(parquet.code).toBe(0);
    expect(parquet.stderr).toMatch(/3 rows written/);
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(pq) });
    expect(rows.map((r) => [r.trial, r.trial_id, r.name, r.language, r.step, r.value])).toEqual([
      [0, t0, 'loss', null, 1, 0.5],
      [0, t0, 'loss', null, 2, 0.25],
      [1, t1, 'rg', 'zh', 1, 0.125],
    ]);
    expect(rows[0]!.time).toBeInstanceOf(Date);
    expect((await mpo(['runs', 'metrics', id, '--format', 'xlsx'], { env })).stderr).toMatch(
      /--format must be one of csv, jsonl, parquet, got "xlsx"/,
    );

    for (const [t, v] of [
      [t0, 0.1],
      [t1, 0.3],
    ] as const)
      await db.runs.updateTrial(t, { status: 'SUCCEEDED', currentStep: 10, bestMetric: v });
    const watch = await mpo(['runs', 'watch', id, '--interval', '0.2'], { env });
    expect(watch.code).toBe(0);
    expect(watch.stdout).toContain('"status":"SUCCEEDED"');

    await db.artifacts.recordEvaluations([
      { trialId: t1, benchmark: 'multijail', language: 'zh', metric: 'asr', value: 0.5, n: 4 },
      { trialId: t1, benchmark: 'multijail', language: 'avg', metric: 'asr', value: 0.5, n: 4 },
    ]);
    const baseline = join(dir, 'baseline.json');
    writeFileSync(
      baseline,
      JSON.stringify([{ benchmark: 'multijail', language: 'zh', metric: 'asr', value: 1, n: 4 }]),
    );
    const judged = (promptId: string, verdict: 'safe' | 'unsafe') => ({
      benchmark: 'multijail',
      language: 'zh',
      promptId,
      prompt: `prompt ${promptId}`,
      response: `response ${promptId}`,
      verdict,
      judge: 'builtin:refusal-detector',
    });
    await db.generations.replace({ trialId: t1 }, [
      judged('1', 'unsafe'),
      judged('2', 'safe'),
      judged('3', 'unsafe'),
      judged('4', 'unsafe'),
    ]);
    const report = await mpo(['report', id, '--baseline', baseline], { env });
    expect(report.code).toBe(0);
    expect(report.stdout).toContain('| MPO | 50.0 | 50.0 |');
    expect(report.stdout).toContain('| Base model | 100.0 |');
    // Two attack successes and one refusal of zh, from the API's generations of the best trial.
    expect(report.stdout).toContain('| zh | unsafe | 1 | prompt 1 | response 1 |');
    expect(report.stdout).toContain('| zh | unsafe | 3 | prompt 3 | response 3 |');
    expect(report.stdout).toContain('| zh | safe | 2 | prompt 2 | response 2 |');
    expect(report.stdout).not.toContain('prompt 4');
    expect(report.stdout).toMatch(
      /the training cutoff: the sweep's held-out metric and this evaluated reward gap/,
    );

    const queues = await mpo(['queues'], { env });
    expect(queues.code).toBe(0);
    expect(queues.stdout).toMatch(/^queue\s+waiting/m);
    expect(queues.stdout).toMatch(/^train-cpu\s+\d+/m);
  });

  it('gives every kind of error its own exit code and a clear message', async () => {
    const dir = tmp('errors');
    const badFile = writeJson(dir, 'bad.json', spec({ method: 'ppo', training: { steps: 0 } }));
    const bad = await mpo(['runs', 'submit', badFile], { env });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/400/);
    // The API's problems, each at the line of its field in the file submitted.
    const lineOf = (key: string) =>
      readFileSync(badFile, 'utf8')
        .split('\n')
        .findIndex((l) => l.includes(`"${key}":`)) + 1;
    expect(bad.stderr).toMatch(new RegExp(`bad\\.json:${lineOf('method')}:\\d+: method: `));
    expect(bad.stderr).toMatch(new RegExp(`bad\\.json:${lineOf('steps')}:\\d+: training\\.steps: `));

    const missing = await mpo(['runs', 'watch', randomUUID()], { env });
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/404/);

    const denied = await mpo(['runs', 'list'], { env: { ...env, MPO_TOKEN: 'wrong' } });
    expect(denied.code).toBe(5);
    // The problem document's `detail` reaches the user.
    expect(denied.stderr).toMatch(/401: malformed Authorization header/);

    const down = await mpo(['queues'], { env: { ...env, MPO_API_URL: 'http://127.0.0.1:9' } });
    expect(down.code).toBe(6);
    expect(down.stderr).toMatch(/cannot reach the API at http:\/\/127\.0\.0\.1:9/);

    expect((await mpo(['runs', 'frobnicate'], { env })).code).toBe(2);
    expect((await mpo(['runs', 'submit', join(dir, 'none.json')], { env })).code).toBe(4);
  });
});
