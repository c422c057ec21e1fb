// The repository on its own. (1) A clone in a folder with nothing beside it runs the commands that
// read the shipped data: data list, eval, score, testbed build. (2) The Docker image's layout
// (infra/Dockerfile: the repository at /app, MPO_MODEL_ROOT=/models, MPO_DATA_ROOT=/data,
// MPO_ARTIFACT_ROOT=/artifacts as docker-compose.yml and infra/k8s/config.yaml set them, no other
// volume) runs a real worker agent that takes an evaluation job on builtin data. Docker does not run
// here, so the layout is built in a temporary folder.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb, type Db } from '@mpo/db';
import { writeCsrtSample } from '@mpo/eval';
import { EVAL_JOB_OPTIONS, evalQueue, jobIds } from '@mpo/queue';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DATABASE_URL,
  deleteKeys,
  evalData,
  newRedis,
  newTrials,
  REDIS_URL,
  waitUntil,
} from '../apps/worker/test/helpers.js';
import { cloneBuilt, repoRoot } from './checkout.js';

const temps: string[] = [];
// Removing two checkouts (node_modules' many links) takes a while on a busy machine.
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
}, 120_000);
const tempDir = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `mpo-${tag}-`));
  temps.push(d);
  return d;
};

/** The environment of a process in a fresh container or shell: no project variables of this machine. */
const bareEnv = (home: string, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: home,
  ...extra,
});

describe('a clone with nothing beside it', () => {
  let outer: string;
  let clone: string;
  const mpo = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(clone, 'apps/cli/bin/mpo.js'), ...args], {
      cwd: clone,
      encoding: 'utf8',
      env: bareEnv(outer),
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  beforeAll(() => {
    outer = tempDir('clone');
    clone = cloneBuilt(join(outer, 'repo'));
  }, 120_000);

  it('holds only the clone', () => {
    expect(readdirSync(outer)).toEqual(['repo']);
  });

  it('mpo data list: every builtin resolves inside the clone, and the data matches its sha256s', () => {
    const r = mpo(['data', 'list', '--json', '--check']);
    expect(r.code, r.stderr).toBe(0);
    const entries = JSON.parse(r.stdout) as { id: string; path: string; exists: boolean }[];
    expect(entries.map((e) => e.id)).toEqual(
      expect.arrayContaining([
        'builtin:mpo-llama',
        'builtin:multijail',
        'builtin:golden-llama',
        'builtin:tiny-multilingual-transfer',
        'builtin:mpo-transfer',
      ]),
    );
    // Every entry ships in the clone, both testbeds included (--check above verified their sha256s).
    for (const e of entries) {
      expect(e.path.startsWith(`${clone}/`), e.path).toBe(true);
      expect(e.exists, e.id).toBe(true);
    }
  });

  it('mpo eval: reward gap on builtin MPO data, MultiJail and utility', () => {
    const r = mpo(
      ['eval', '--model', 'builtin:golden-llama', '--benchmarks', 'reward-gap,multijail,utility'].concat([
        '--languages',
        'en,zh',
        '--max-prompts',
        '2',
        '--max-new-tokens',
        '4',
        '--json',
      ]),
    );
    expect(r.code, r.stderr).toBe(0);
    const keys = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.type === 'result')
      .map((l) => `${l.benchmark}/${l.language}`);
    expect(keys).toEqual(expect.arrayContaining(['reward-gap/en', 'multijail/zh', 'utility/zh']));
  });

  it('mpo eval --benchmarks csrt says where to get CSRT (not shipped)', () => {
    const r = mpo(['eval', '--model', 'builtin:golden-llama', '--benchmarks', 'csrt']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/github\.com\/haneul-yoo\/csrt/);
  });

  it('mpo score on the golden fixture', () => {
    const golden = join(clone, 'packages/engine/test/fixtures/golden-llama');
    const r = mpo(['score', '--model', golden, '--data', join(golden, 'pairs.jsonl'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).examples).toHaveLength(12);
  });

  it('mpo testbed build (two steps) reads the MPO and alpaca data', () => {
    const r = mpo(['testbed', 'build', '--max-steps', '2', '--out', join(outer, 'testbed'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(done).toMatchObject({ type: 'done', steps: 2 });
    expect(done.examples.alpaca).toBeGreaterThan(1000);
  }, 120_000);

  it('mpo data list --check fails naming a shipped file whose bytes changed (last: it alters the clone)', () => {
    appendFileSync(join(clone, 'datasets/multijail/MultiJail.csv'), '\n');
    const r = mpo(['data', 'list', '--check']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/datasets\/multijail\/MultiJail\.csv: sha256 differs/);
  });
});

describe('the Docker image layout', () => {
  let root: string;
  let db: Db;
  const redis = newRedis();
  const prefix = `mpo-image-${randomUUID().slice(0, 8)}`;
  let worker: ChildProcess | null = null;
  let log = '';

  beforeAll(() => {
    root = tempDir('image');
    cloneBuilt(join(root, 'app'));
    for (const d of ['models', 'data', 'artifacts']) mkdirSync(join(root, d));
    db = createDb(DATABASE_URL);
  }, 120_000);
  afterAll(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((r) => worker!.once('exit', r));
      worker.kill('SIGTERM');
      await exited;
    }
    await deleteKeys(redis, prefix);
    redis.disconnect();
    await db.close();
  }, 60_000);

  it('a worker agent evaluates a trial on builtin data with only the image paths', async () => {
    const { runId, trialIds } = await newTrials(db, 1, 'image-layout');
    const trialId = trialIds[0]!;
    // The trial's final weights, where a finished train job leaves them.
    cpSync(
      join(repoRoot, 'packages/engine/test/fixtures/golden-llama'),
      join(root, 'artifacts', runId, trialId, 'final'),
      { recursive: true },
    );
    const app = join(root, 'app');
    worker = spawn(process.execPath, [join(app, 'apps/worker/dist/main.js')], {
      cwd: app,
      env: bareEnv(root, {
        NODE_ENV: 'production',
        DATABASE_URL,
        REDIS_URL,
        MPO_QUEUE_PREFIX: prefix,
        MPO_DEVICES: 'cpu:1',
        MPO_MODEL_ROOT: join(root, 'models'),
        MPO_DATA_ROOT: join(root, 'data'),
        MPO_ARTIFACT_ROOT: join(root, 'artifacts'),
        // CSRT is not in the image: an operator mounts a copy and names it (here a CSRT-format sample).
        MPO_CSRT_PATH: writeCsrtSample(join(root, 'data', 'csrt.csv'), 2),
        LOG_LEVEL: 'info',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout!.on('data', (b) => {
      log += b;
    });
    worker.stderr!.on('data', (b) => {
      log += b;
    });
    await waitUntil(() => log.includes('agent started'), 'the agent to start', 60_000);

    const queue = new Queue(evalQueue('cpu'), { connection: redis, prefix });
    try {
      const job = await queue.add(
        'eval',
        evalData(runId, trialId, {
          model: { kind: 'builtin', id: 'golden-llama' },
          data: [{ kind: 'builtin', id: 'mpo-llama' }],
          benchmarks: ['reward-gap', 'multijail', 'csrt', 'utility'],
          languages: ['en', 'zh'],
          maxPrompts: 2,
        }),
        { ...EVAL_JOB_OPTIONS, jobId: jobIds.eval(trialId) },
      );
      const state = await waitUntil(
        async () => {
          const s = await (await queue.getJob(job.id!))?.getState();
          return s === 'completed' || s === 'failed' ? s : null;
        },
        'the eval job',
        150_000,
      );
      expect(state, log.slice(-3000)).toBe('completed');
    } finally {
      await queue.close();
    }
    const rows = await db.artifacts.evaluations({ trialId });
    expect(rows.map((r) => `${r.benchmark}/${r.language}/${r.metric}`)).toEqual(
      expect.arrayContaining([
        'reward-gap/en/rg',
        'reward-gap/zh/rg',
        'multijail/zh/asr',
        'csrt/csrt/asr',
        'utility/en/ppl',
      ]),
    );
    // The evaluation read builtin:mpo-llama (the data of the run), resolved inside the image.
    const cfg = JSON.parse(
      readFileSync(join(root, 'artifacts', runId, trialId, 'eval/eval-config.json'), 'utf8'),
    );
    expect(cfg.data).toEqual({ path: 'builtin:mpo-llama' });
    expect(readdirSync(root).sort()).toEqual(['app', 'artifacts', 'data', 'models']);
  }, 240_000);
});
