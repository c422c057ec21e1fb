// `mpo reproduce` end to end against a real API and worker agent (real Postgres and Redis): a tiny
// configuration (two methods, two seeds, one step) on the committed byte-level testbed, read back from the
// API and summarised over seeds.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../src/report/stats.js';
import { mpo, repoRoot, tmp } from './helpers.js';

const token = `cli-reproduce-${randomUUID()}`;
const prefix = `mpo-cli-reproduce-${randomUUID().slice(0, 8)}`;
const children: ChildProcess[] = [];
let url: string;
let workerLog = '';

const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });

function start(script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(process.execPath, [join(repoRoot, script)], {
    env: { ...process.env, MPO_QUEUE_PREFIX: prefix, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  p.stdout!.on('data', (b) => {
    workerLog = `${workerLog}${b}`.slice(-20_000);
  });
  p.stderr!.on('data', (b) => {
    workerLog = `${workerLog}${b}`.slice(-20_000);
  });
  children.push(p);
  return p;
}

beforeAll(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  start('apps/api/dist/main.js', { PORT: String(port), HOST: '127.0.0.1', MPO_ADMIN_TOKEN: token });
  start('apps/worker/dist/main.js', {
    MPO_DEVICES: 'cpu:2',
    MPO_MODEL_ROOT: join(repoRoot, 'models'),
    MPO_DATA_ROOT: join(repoRoot, 'datasets'),
    MPO_ARTIFACT_ROOT: tmp('reproduce-artifacts'),
  });
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
});
afterAll(async () => {
  await Promise.all(
    children.map(
      (c) =>
        new Promise((r) => {
          if (c.exitCode !== null) return r(null);
          c.once('exit', r);
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 15_000).unref();
        }),
    ),
  );
}, 30_000);

interface Summary {
  mean: number;
  sd: number | null;
  n: number;
}

describe('mpo reproduce', () => {
  it('submits one sweep per method over seeds, waits, and summarises what the API returns', async () => {
    const out = join(tmp('reproduce'), 'report.md');
    const r = await mpo(
      [
        'reproduce',
        '--testbed',
        'tiny-multilingual',
        '--methods',
        'mpo,dpo',
        // Fails with the runs' ids before the test's own timeout, so the assertion prints the logs.
        '--timeout',
        '13',
        '--seeds',
        '2',
        '--lr',
        '3e-4',
        '--budget',
        '1',
        '--max-prompts',
        '1',
        '--out',
        out,
        '--json',
      ],
      { env: { MPO_API_URL: url, MPO_TOKEN: token } },
    );
    expect(r.code, `${r.stderr}\n--- worker ---\n${workerLog}`).toBe(0);
    expect(r.stderr).toMatch(/submitted MPO: run \S+ \(2 trials\)/);
    // Progress: optimizer steps while the trials train, then trials evaluated, ending at all four trials.
    const progress = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{"type":"progress"'))
      .map((l) => JSON.parse(l) as { phase: string; done: number; total: number });
    const lastTraining = progress.findLastIndex((p) => p.phase === 'reproduce');
    const firstEvaluate = progress.findIndex((p) => p.phase === 'evaluate');
    expect(lastTraining, r.stderr).toBeGreaterThanOrEqual(0);
    expect(firstEvaluate, r.stderr).toBeGreaterThan(lastTraining);
    expect(progress.at(-1)).toMatchObject({ phase: 'evaluate', done: 4, total: 4 });
    const res = r.lines.at(-1) as {
      plan: unknown;
      arms: { key: string; seeds: number[]; runId: string; cells: Record<string, Record<string, Summary>> }[];
      base: { cells: Record<string, Record<string, number | null>> };
    };
    expect(res.plan).toMatchObject({
      testbed: 'tiny-multilingual',
      seeds: 2,
      budget: 1,
      variants: ['mpo', 'dpo'],
    });
    expect(res.arms.map((a) => [a.key, a.seeds])).toEqual([
      ['mpo', [1, 2]],
      ['dpo', [1, 2]],
    ]);
    // Every summary is the mean ± sd of the two trials' evaluations as GET /runs/:id/evaluations returns them.
    for (const arm of res.arms) {
      const api = (await (
        await fetch(`${url}/runs/${arm.runId}/evaluations`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as { evaluations: { benchmark: string; language: string; metric: string; value: number }[] };
      const values = (b: string, l: string, m: string) =>
        api.evaluations
          .filter((e) => e.benchmark === b && e.language === l && e.metric === m)
          .map((e) => e.value);
      for (const [lang, b, m, cell] of [
        ['zh', 'reward-gap', 'rg', 'rg'],
        ['sw', 'multijail', 'asr', 'asr'],
        ['en', 'utility', 'ppl', 'ppl'],
      ] as const) {
        expect(values(b, lang, m)).toHaveLength(2);
        const want = summarize(values(b, lang, m))!;
        expect(arm.cells[lang]![cell]!.mean).toBeCloseTo(want.mean, 12);
        expect(arm.cells[lang]![cell]!.sd).toBeCloseTo(want.sd!, 12);
      }
    }
    // The base model's "before" (evaluated by the command) and the markdown written beside the JSON.
    expect(res.base.cells.en!.rg).toEqual(expect.any(Number));
    const md = readFileSync(out, 'utf8');
    expect(md).toContain('mpo reproduce --testbed tiny-multilingual --methods mpo,dpo');
    expect(md).toMatch(/## Table 1 shape/);
    expect(md).toMatch(/\| MPO \(lr 3e-4, 2 seeds\) \|/);
    expect(md).toMatch(/\| DPO \(lr 3e-4, 2 seeds\) \|/);
    // About a minute on two idle cores (four one-step trials and their evaluations); a loaded machine needs more.
  }, 900_000);
});
