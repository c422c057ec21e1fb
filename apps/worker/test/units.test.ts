// Pure parts of the agent: device slots, config mapping, trial bookkeeping,
// eval line parsing, the protocol file follower and the trial folder lock.
import { appendFileSync, chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ParsedLine, TrainerMessage } from '@mpo/queue';
import { parseTrainConfig } from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { startChild, withheldEnv } from '../src/child.js';
import { Coalescer } from '../src/coalesce.js';
import { parseCommand } from '../src/config.js';
import { detectDevices, detectGpus, parseDevices, SlotPool } from '../src/devices.js';
import { evalConfig } from '../src/eval-run.js';
import { createLogger } from '../src/log.js';
import { newProtocolFile, ProtocolFollower, replayProtocol } from '../src/protocol.js';
import { buildTrainConfig, guessDataFormat, JobConfigError } from '../src/trainer-config.js';
import { acquireTrialLock, LOCK_FILE } from '../src/trial-lock.js';
import { TrialState } from '../src/trial-state.js';
import { evalData, scratch, trainData } from './helpers.js';

const RUN = '00000000-0000-4000-8000-000000000001';
const TRIAL = '00000000-0000-4000-8000-000000000002';

describe('device slots', () => {
  it('reads MPO_DEVICES', () => {
    expect(parseDevices('cpu:2', [4, 5, 6])).toEqual([{ device: 'cpu', ids: [4, 5] }]);
    expect(parseDevices('cuda:0,cuda:1', [0])).toEqual([{ device: 'gpu', ids: [0, 1] }]);
    expect(parseDevices('cpu:3,gpu:2', [0, 1])).toEqual([
      { device: 'cpu', ids: [0, 1, 0] },
      { device: 'gpu', ids: [0, 1] },
    ]);
    expect(parseDevices('cpu', [2, 3])).toEqual([{ device: 'cpu', ids: [2, 3] }]);
    expect(() => parseDevices('tpu:4', [0])).toThrow(/cannot read "tpu:4"/);
    expect(() => parseDevices('cpu:0', [0])).toThrow(/cannot read/);
  });

  it('finds GPUs with nvidia-smi, and falls back to CPU cores without it', () => {
    const s = scratch('smi');
    const smi = join(s.dir, 'nvidia-smi');
    writeFileSync(smi, '#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n3\\n"\n');
    chmodSync(smi, 0o755);
    expect(detectGpus(smi)).toEqual([0, 1, 3]);
    expect(detectDevices({ nvidiaSmi: smi })).toEqual([{ device: 'gpu', ids: [0, 1, 3] }]);
    expect(detectGpus(join(s.dir, 'missing'))).toEqual([]);
    expect(detectDevices({ nvidiaSmi: join(s.dir, 'missing'), cpuCores: '0-1' })).toEqual([
      { device: 'cpu', ids: [0, 1] },
    ]);
    // MPO_DEVICES wins over detection.
    expect(detectDevices({ devices: 'cpu:1', cpuCores: '1', nvidiaSmi: smi })).toEqual([
      { device: 'cpu', ids: [1] },
    ]);
  });

  it('hands out free slots and wakes waiters on release', async () => {
    const pool = new SlotPool([{ device: 'cpu', ids: [0, 1, 2] }]);
    const a = pool.tryAcquire({ device: 'cpu', count: 2 });
    expect(a).toEqual({ device: 'cpu', slots: [0, 1], ids: [0, 1] });
    expect(pool.tryAcquire({ device: 'cpu', count: 2 })).toBeNull();
    expect(pool.tryAcquire({ device: 'gpu', count: 1 })).toBeNull();
    const b = pool.tryAcquire({ device: 'cpu', count: 1 })!;
    expect(pool.free('cpu')).toBe(0);
    let woke = false;
    const waiting = pool.waitFree('cpu').then(() => {
      woke = true;
    });
    await sleep(10);
    expect(woke).toBe(false);
    pool.release(b);
    await waiting;
    expect(pool.snapshot()).toEqual([{ device: 'cpu', total: 3, free: 1, ids: ['0', '1', '2'] }]);
    pool.release(a!);
    expect(pool.free('cpu')).toBe(3);
  });

  it('stops waiting when aborted', async () => {
    const pool = new SlotPool([{ device: 'cpu', ids: [0] }]);
    pool.tryAcquire({ device: 'cpu', count: 1 });
    const ac = new AbortController();
    const w = pool.waitFree('cpu', ac.signal);
    ac.abort();
    await w;
  });
});

describe('child environment', () => {
  it('keeps database, queue and admin credentials from trainers, and judge keys from all but judges', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      DATABASE_URL: 'postgresql://u:secret@db/mpo',
      REDIS_URL: 'redis://:secret@redis:6379',
      MPO_ADMIN_TOKEN: 'admin-secret-123456',
      MPO_JUDGE_API_KEY: 'sk-judge',
      MPO_KEEP_ME: 'visible',
    });
    try {
      const envOf = async (judge: boolean) => {
        const lines: string[] = [];
        const child = startChild({
          command: [process.execPath, '-e', 'console.log(JSON.stringify(process.env))'],
          ranks: 1,
          lease: { device: 'cpu', slots: [0], ids: [0] },
          log: { debug() {} } as never,
          onStdoutLine: (l) => void lines.push(l),
          judge,
        });
        await child.exited;
        return JSON.parse(lines.join('')) as Record<string, string>;
      };
      const trainer = await envOf(false);
      for (const k of ['DATABASE_URL', 'REDIS_URL', 'MPO_ADMIN_TOKEN', 'MPO_JUDGE_API_KEY'])
        expect(trainer[k], k).toBeUndefined();
      expect(trainer.MPO_KEEP_ME).toBe('visible');
      const judge = await envOf(true);
      expect(judge.MPO_JUDGE_API_KEY).toBe('sk-judge');
      expect(judge.DATABASE_URL).toBeUndefined();
      expect(withheldEnv({ MPO_JUDGE_URL: 'x' }, { judge: false })).toHaveProperty(
        'MPO_JUDGE_URL',
        undefined,
      );
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});

describe('worker logs', () => {
  it('redact judge keys and credentials', () => {
    const lines: string[] = [];
    const log = createLogger('info', {}, { write: (l: string) => void lines.push(l) } as never);
    log.info({ judge: { apiKey: 'sk-judge' }, env: { DATABASE_URL: 'postgresql://u:pw@db/x' } }, 'config');
    expect(lines.join('')).not.toMatch(/sk-judge|pw@db/);
  });
});

describe('MPO_CLI_COMMAND', () => {
  it('takes a JSON array or words', () => {
    expect(parseCommand('["node", "/a b/x.mjs"]')).toEqual(['node', '/a b/x.mjs']);
    expect(parseCommand(' node  fake.mjs ')).toEqual(['node', 'fake.mjs']);
    expect(() => parseCommand('[1]')).toThrow();
  });
});

describe('payload → trainer config', () => {
  const s = scratch('config');
  const roots = { modelRoot: s.modelRoot, dataRoot: s.dataRoot, artifactRoot: s.artifactRoot };

  it('maps every training field, puts the output under the artifact root, and validates', () => {
    const plan = buildTrainConfig(trainData(RUN, TRIAL, { training: { steps: 30, seed: 7 } }), roots);
    expect(plan.output).toBe(join(s.artifactRoot, RUN, TRIAL));
    expect(plan.config).toMatchObject({
      model: { init: { hiddenSize: 32 }, seed: 1 },
      data: {
        path: 'builtin:golden-pairs',
        format: 'pretokenized',
        dominantLanguage: 'en',
        languages: ['en', 'zh', 'ko', 'ar', 'bn', 'sw'],
      },
      method: 'dpo',
      hyperparameters: { beta: 0.1 },
      training: {
        maxSteps: 30,
        batchSize: 2,
        microBatchSize: 1,
        learningRate: 1e-3,
        warmupRatio: 0.1,
        seed: 7,
        checkpointEvery: 10,
      },
      cutoff: 64,
      output: plan.output,
      threads: 1,
      device: 'cpu',
    });
    expect(plan.config.eval).toBeUndefined();
  });

  it('is the same on every agent (what a resume hash covers depends on the payload only)', () => {
    const d = trainData(RUN, TRIAL, { slots: { device: 'cpu', count: 2 } });
    expect(buildTrainConfig(d, roots)).toEqual(buildTrainConfig(d, roots));
    const gpu = buildTrainConfig({ ...d, slots: { device: 'gpu', count: 2 } }, roots, { gpuRankThreads: 3 });
    expect(gpu.config).toMatchObject({ device: 'cuda:0', threads: 3 });
  });

  it("passes the spec's dtype and activation checkpointing to the trainer, which accepts them", () => {
    const plan = buildTrainConfig(
      trainData(RUN, TRIAL, { training: { dtype: 'bf16', activationCheckpointing: true } }),
      roots,
    );
    expect(plan.config).toMatchObject({ dtype: 'bf16', activationCheckpointing: true });
    expect(parseTrainConfig(structuredClone(plan.config), plan.output)).toMatchObject({
      dtype: 'bfloat16',
      activationCheckpointing: true,
    });
    const plain = buildTrainConfig(trainData(RUN, TRIAL), roots);
    expect(plain.config.dtype).toBeUndefined();
    expect(plain.config.activationCheckpointing).toBeUndefined();
  });

  it('evaluates at the ASHA rungs, and whenever the objective is a held-out metric', () => {
    const asha = {
      rungs: [5, 15],
      maxSteps: 45,
      reductionFactor: 3,
      metric: 'heldout/reward_gap_mean',
      mode: 'max' as const,
    };
    const plan = buildTrainConfig(trainData(RUN, TRIAL, { asha, totalSteps: 45 }), roots);
    expect(plan.config.eval).toEqual({ at: [5, 15], every: 0 });
    expect((plan.config.training as { maxSteps: number }).maxSteps).toBe(45);
    const heldout = buildTrainConfig(
      trainData(RUN, TRIAL, { objective: { metric: 'heldout/reward_gap:zh', mode: 'max' } }),
      roots,
    );
    expect(heldout.config.eval).toEqual({ at: [], every: 0 });
  });

  it('keeps paths inside the roots, symlinks included', () => {
    const bad = (model: string) =>
      buildTrainConfig(trainData(RUN, TRIAL, { model: { kind: 'path', path: model } }), roots);
    expect(() => bad('../../etc/passwd')).toThrow(JobConfigError);
    expect(() => bad('missing-model')).toThrow(/does not exist/);
    symlinkSync('/etc', join(s.modelRoot, 'escape'));
    expect(() => bad('escape/hostname')).toThrow(/outside the root/);
    expect(() =>
      buildTrainConfig(trainData(RUN, TRIAL, { data: [{ kind: 'path', path: '../x.jsonl' }] }), roots),
    ).toThrow(JobConfigError);
  });

  it('opens data under the data root and guesses its format', () => {
    const golden = readFileSync(
      join(import.meta.dirname, '../../../packages/engine/test/fixtures/golden-llama/pairs.jsonl'),
    );
    writeFileSync(join(s.dataRoot, 'pairs.jsonl'), golden);
    writeFileSync(join(s.dataRoot, 'mpo.json'), '[{"source_chosen": "x"}]');
    writeFileSync(join(s.dataRoot, 'sft.json'), '[{"instruction": "x", "output": "y"}]');
    const plan = buildTrainConfig(
      trainData(RUN, TRIAL, { data: [{ kind: 'path', path: 'pairs.jsonl' }] }),
      roots,
    );
    expect(plan.config.data).toMatchObject({ path: join(s.dataRoot, 'pairs.jsonl'), format: 'pretokenized' });
    expect(guessDataFormat(join(s.dataRoot, 'mpo.json'))).toBe('mpo');
    expect(guessDataFormat(join(s.dataRoot, 'sft.json'))).toBe('alpaca');
  });

  it('lists every problem of a config the trainer would reject', () => {
    const d = trainData(RUN, TRIAL, { method: 'nope', training: { microBatch: 4, batchSize: 2 } });
    expect(() => buildTrainConfig(d, roots)).toThrow(/method: must be one of[\s\S]*microBatchSize/);
    expect(() =>
      buildTrainConfig(trainData(RUN, TRIAL, { model: { kind: 'builtin', id: 'no-such-model' } }), roots),
    ).toThrow(/unknown builtin model builtin:no-such-model/);
    expect(() =>
      buildTrainConfig(
        trainData(RUN, TRIAL, {
          data: [
            { kind: 'builtin', id: 'golden-pairs' },
            { kind: 'builtin', id: 'golden-pairs' },
          ],
        }),
        roots,
      ),
    ).toThrow(/one data source per trial/);
  });

  it("builds the eval config: trained weights, the run's benchmarks, MPO data for the reward gap", () => {
    expect(evalConfig(evalData(RUN, TRIAL), '/w/final', roots)).toEqual({
      model: '/w/final',
      benchmarks: ['multijail'],
      languages: ['en', 'zh'],
      maxPrompts: 5,
      judge: 'builtin',
      // the run's training cutoff for the reward gap (what the sweep's metric used), room for generation beside it
      cutoff: 64,
      benchmarkCutoff: 512,
      device: 'cpu',
      threads: 1,
    });
    const mpo = evalData(RUN, TRIAL, { data: [{ kind: 'builtin', id: 'mpo-qwen' }], cutoff: 4 });
    expect(evalConfig(mpo, '/w', roots)).toMatchObject({
      data: { path: 'builtin:mpo-qwen' },
      cutoff: 4,
      benchmarkCutoff: 512,
    });
    writeFileSync(join(s.dataRoot, 'mine.json'), '[{"source_chosen": "x"}]');
    const own = evalData(RUN, TRIAL, { data: [{ kind: 'path', path: 'mine.json' }] });
    expect(evalConfig(own, '/w', roots)).toMatchObject({ data: { path: join(s.dataRoot, 'mine.json') } });
  });
});

describe('trial bookkeeping', () => {
  const step = (n: number, loss: number, metrics: Record<string, unknown> = {}): TrainerMessage =>
    ({ type: 'step', step: n, totalSteps: 10, loss, metrics }) as TrainerMessage;
  const evalAt = (n: number, gap: number): TrainerMessage =>
    ({
      type: 'eval',
      step: n,
      metrics: { 'heldout/reward_gap': { en: gap, zh: gap + 0.2 } },
    }) as TrainerMessage;

  it('tracks the best objective value (loss included)', () => {
    const s = new TrialState({ metric: 'loss', mode: 'min' }, undefined, 0.9);
    s.observe(step(1, 1.2));
    expect(s.bestMetric).toBe(0.9);
    s.observe(step(2, 0.5));
    s.observe(step(3, 0.7));
    expect([s.step, s.loss, s.bestMetric]).toEqual([3, 0.7, 0.5]);
    const g = new TrialState({ metric: 'heldout/reward_gap:zh', mode: 'max' }, undefined);
    g.observe(evalAt(3, 0.1));
    g.observe(evalAt(6, 0.05));
    expect(g.bestMetric).toBeCloseTo(0.3);
  });

  it('decides a rung on its eval line, or on the step metrics when no eval line comes', () => {
    const asha = {
      rungs: [2, 4],
      maxSteps: 10,
      reductionFactor: 3,
      metric: 'heldout/reward_gap',
      mode: 'max' as const,
    };
    const s = new TrialState({ metric: 'loss', mode: 'min' }, asha);
    expect(s.observe(step(1, 1))).toEqual([]);
    expect(s.observe(step(2, 1))).toEqual([]);
    expect(s.observe(evalAt(2, 0.4))).toEqual([{ rung: 0, step: 2, value: expect.closeTo(0.5) }]);
    expect(s.observe(step(3, 1))).toEqual([]);
    // No eval at step 4: the next step decides rung 1 on step 4's metrics.
    expect(s.observe(step(4, 1, { 'heldout/reward_gap': 0.7 }))).toEqual([]);
    expect(s.observe(step(5, 1))).toEqual([{ rung: 1, step: 4, value: 0.7 }]);
    expect(s.observe(evalAt(4, 0.1))).toEqual([]); // decided already
  });

  it('ranks a rung without its metric last (NaN)', () => {
    const asha = { rungs: [1], maxSteps: 3, reductionFactor: 3, metric: 'nope', mode: 'max' as const };
    const s = new TrialState({ metric: 'loss', mode: 'min' }, asha);
    s.observe(step(1, 1));
    expect(s.flushRungs()).toEqual([{ rung: 0, step: 1, value: Number.NaN }]);
  });
});

describe('protocol files', () => {
  it('follows a growing file line by line, across partial writes', async () => {
    const s = scratch('follow');
    const file = newProtocolFile(s.dir, 'agent/1');
    const seen: ParsedLine[] = [];
    const f = new ProtocolFollower(file, (p) => seen.push(p), 10);
    f.start();
    appendFileSync(file, '{"type":"start","totalSteps":3,"resumedFrom":null}\n{"type":"step","st');
    await sleep(50);
    expect(seen).toHaveLength(1);
    appendFileSync(file, 'ep":1,"totalSteps":3,"loss":0.5,"metrics":{}}\ngarbage\n{"type":"done","step":1,');
    appendFileSync(file, '"totalSteps":3,"stopped":true,"checkpoint":null}');
    await f.stop();
    expect(seen.map((p) => (p.ok ? p.message.type : 'bad'))).toEqual(['start', 'step', 'bad', 'done']);
  });

  it('replays earlier attempts up to the resumed step', async () => {
    const s = scratch('replay');
    const first = newProtocolFile(s.dir, 'a');
    const lines = [
      { type: 'start', totalSteps: 4, resumedFrom: null },
      { type: 'step', step: 1, totalSteps: 4, loss: 1, metrics: {} },
      { type: 'step', step: 2, totalSteps: 4, loss: 1, metrics: {} },
      { type: 'eval', step: 2, metrics: { x: 1 } },
      { type: 'checkpoint', step: 2, path: '/c/2', bytes: 1, sha256: 'a'.repeat(64) },
      { type: 'step', step: 3, totalSteps: 4, loss: 1, metrics: {} },
    ];
    writeFileSync(first, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n{"type":"st`);
    await sleep(2);
    const current = newProtocolFile(s.dir, 'b');
    appendFileSync(current, `${JSON.stringify(lines[5])}\n`);
    const replayed = await replayProtocol(s.dir, 2, current);
    expect(replayed.map((m) => `${m.type}@${(m as { step: number }).step}`)).toEqual([
      'step@1',
      'step@2',
      'eval@2',
      'checkpoint@2',
    ]);
  });
});

describe('trial folder lock', () => {
  const me = { agentId: 'a', host: 'h1', pid: process.pid, jobId: 'j' };

  it('is exclusive while its owner lives, and taken over once it is gone', async () => {
    const s = scratch('lock');
    const dir = join(s.dir, 'trial');
    const first = await acquireTrialLock(dir, me, async () => true);
    expect(first.ok).toBe(true);
    const second = await acquireTrialLock(dir, { ...me, agentId: 'b' }, async () => true);
    expect(second).toMatchObject({ ok: false, owner: { agentId: 'a', pid: process.pid } });
    if (first.ok) first.release();
    expect((await acquireTrialLock(dir, { ...me, agentId: 'b' }, async () => true)).ok).toBe(true);

    // A dead pid on this host, or a silent agent on another host, holds nothing.
    const dead = join(s.dir, 'dead');
    mkdirSync(dead);
    writeFileSync(join(dead, LOCK_FILE), JSON.stringify({ ...me, pid: 2 ** 22 + 1, token: 't', at: 0 }));
    expect((await acquireTrialLock(dead, me, async () => true)).ok).toBe(true);
    const remote = join(s.dir, 'remote');
    mkdirSync(remote);
    writeFileSync(join(remote, LOCK_FILE), JSON.stringify({ ...me, host: 'h2', token: 't', at: 0 }));
    expect((await acquireTrialLock(remote, me, async () => true)).ok).toBe(false);
    expect((await acquireTrialLock(remote, me, async () => false)).ok).toBe(true);

    // A restarted container: same host, same pid (often 1), but an earlier process start.
    const restarted = join(s.dir, 'restarted');
    mkdirSync(restarted);
    writeFileSync(
      join(restarted, LOCK_FILE),
      JSON.stringify({ ...me, instance: 'an-earlier-start', token: 't', at: 0 }),
    );
    expect((await acquireTrialLock(restarted, me, async () => true)).ok).toBe(true);
  });
});

describe('coalescing progress', () => {
  it('sends the latest value, one call at a time', async () => {
    const sent: number[] = [];
    const c = new Coalescer<number>(
      async (v) => {
        sent.push(v);
        await sleep(20);
      },
      () => {},
    );
    for (let i = 1; i <= 50; i++) c.push(i);
    await c.settle();
    expect(sent[0]).toBe(1);
    expect(sent.at(-1)).toBe(50);
    expect(sent.length).toBeLessThan(5);
  });
});
