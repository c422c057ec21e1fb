import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { latestCheckpoint, parseTrainConfig, runTraining } from '../src/index.js';
import { byteEncoders, goldenDir, mpoData, tinyMpoConfig, tmp } from './helpers.js';

describe('trainer on MPO data', () => {
  it('trains, logs per-step metrics, checkpoints in the HF layout and writes final weights', async () => {
    const out = tmp('mpo');
    const steps: number[] = [];
    const r = await runTraining(parseTrainConfig(tinyMpoConfig(out)), {
      encoders: byteEncoders,
      hooks: { onStep: (s) => void steps.push(s.step) },
    });
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.stopped).toBe(false);
    expect(r.examples).toBe(12);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6]);
    const first = lines[0];
    for (const k of ['loss', 'lr', 'gradNorm', 'tokensPerSec'])
      expect(Number.isFinite(first[k]), k).toBe(true);
    expect(first.metrics['loss/rg']).toBeGreaterThanOrEqual(0);
    expect(first.metrics['loss/retain']).toBeGreaterThanOrEqual(0);
    expect(Object.keys(first.rgByLanguage).length).toBeGreaterThan(0);
    // Warmup: ceil(0.1·6) = 1 step, so step 1 runs at the peak learning rate.
    expect(first.lr).toBeCloseTo(1e-3, 12);
    // Checkpoints at 2, 4, 6; the newest two are kept.
    expect(readdirSync(join(out, 'checkpoints')).sort()).toEqual(['step-00000004', 'step-00000006']);
    const ck = latestCheckpoint(out)!;
    expect(ck.state.step).toBe(6);
    for (const f of ['config.json', 'model.safetensors', 'optimizer.bin', 'trainer-state.json']) {
      expect(existsSync(join(ck.dir, f)), f).toBe(true);
    }
    const final = await Model.load(r.finalDir!, { threads: 1 });
    expect(final.weightsHash()).toBe(r.model.weightsHash());
    expect(final.weightsHash()).toBe(ck.state.weightsHash);
  });

  it('evaluates the held-out reward gap at the requested steps, per language', async () => {
    const evals: [number, Record<string, unknown>][] = [];
    await runTraining(
      parseTrainConfig({
        ...tinyMpoConfig(tmp('eval')),
        data: { format: 'mpo', path: mpoData, limit: 8, heldOut: 0.2 },
        eval: { at: [2], limit: 6 },
      }),
      {
        encoders: byteEncoders,
        hooks: { onEval: (step, m) => void evals.push([step, m]) },
      },
    );
    expect(evals.map(([s]) => s)).toEqual([2, 6]);
    const perLang = evals[0]![1]['heldout/reward_gap'] as Record<string, number>;
    expect(Object.keys(perLang).length).toBeGreaterThan(0);
    const mean = Object.values(perLang).reduce((a, b) => a + b, 0) / Object.keys(perLang).length;
    expect(evals[0]![1]['heldout/reward_gap_mean']).toBeCloseTo(mean, 12);
  });

  it("tokenizes text with the model's tokenizer and chat template when none is given", async () => {
    const out = tmp('tok');
    const r = await runTraining(
      parseTrainConfig({ ...tinyMpoConfig(out), training: { maxSteps: 1, batchSize: 2, microBatchSize: 2 } }),
    );
    expect(r.examples).toBe(12);
    // A random-init byte model gets the byte tokenizer and the byte chat template: prompts open with <bos>
    // and the user-turn marker (259), responses end with the end-of-turn marker (262).
    const { buildDataset, chatEncoders } = await import('../src/index.js');
    const { ByteTokenizer } = await import('@mpo/engine');
    const enc = chatEncoders(new ByteTokenizer(264), 'byte');
    const ds = buildDataset(parseTrainConfig(tinyMpoConfig(out)).data, enc, 100_000); // no truncation
    expect(ds.examples[0]!.target.prompt.slice(0, 2)).toEqual([256, 259]);
    expect(ds.examples[0]!.target.chosen.at(-1)).toBe(262);
  });

  it('reuses the reference cache across trials and never recomputes it', async () => {
    const cache = join(tmp('refcache'), 'cache');
    const a = await runTraining(
      parseTrainConfig({
        ...tinyMpoConfig(tmp('a')),
        referenceCache: cache,
        training: { maxSteps: 1, batchSize: 4, microBatchSize: 2 },
      }),
      { encoders: byteEncoders },
    );
    const b = await runTraining(
      parseTrainConfig({
        ...tinyMpoConfig(tmp('b')),
        referenceCache: cache,
        hyperparameters: { beta: 1.5 },
        training: { maxSteps: 1, batchSize: 4, microBatchSize: 2, learningRate: 1e-4 },
      }),
      { encoders: byteEncoders },
    );
    expect(a.referenceCacheHit).toBe(false);
    expect(b.referenceCacheHit).toBe(true);
    expect(readdirSync(cache)).toHaveLength(1);
  });

  it('accumulates micro-batches to the same update as one big batch', async () => {
    const run = async (micro: number) =>
      (
        await runTraining(
          parseTrainConfig({
            ...tinyMpoConfig(tmp(`acc${micro}`)),
            method: 'dpo',
            hyperparameters: {},
            training: { batchSize: 4, microBatchSize: micro, maxSteps: 2, learningRate: 1e-3, seed: 9 },
          }),
          { encoders: byteEncoders },
        )
      ).model;
    const [m1, m4] = [await run(1), await run(4)];
    const a = (m1 as unknown as Model).paramBuffer();
    const b = (m4 as unknown as Model).paramBuffer();
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(a.length).toBeGreaterThan(0);
    expect(maxDiff).toBeLessThan(1e-5);
  });
});

describe('trainer on pre-tokenized pairs', () => {
  it('runs DPO on the golden fixture model and lowers the loss', async () => {
    const out = tmp('golden');
    const losses: number[] = [];
    await runTraining(
      parseTrainConfig({
        model: goldenDir,
        data: { format: 'pretokenized', path: join(goldenDir, 'pairs.jsonl'), heldOut: 0 },
        method: 'dpo',
        output: out,
        threads: 1,
        training: { batchSize: 4, microBatchSize: 4, learningRate: 5e-3, epochs: 8, warmupRatio: 0, seed: 1 },
      }),
      { hooks: { onStep: (s) => void losses.push(s.loss) } },
    );
    // DPO starts at log 2 (policy = reference) and must go down on its own training pairs.
    expect(losses[0]).toBeCloseTo(Math.log(2), 4);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! - 0.05);
  });
});

describe('resume', () => {
  const child = (cfg: object) => {
    const p = spawn(
      process.execPath,
      [join(import.meta.dirname, 'fixtures/train-child.mjs'), JSON.stringify(cfg)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const lines: Record<string, unknown>[] = [];
    let buf = '';
    p.stdout.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) lines.push(JSON.parse(l));
    });
    const exited = new Promise<number | null>((res) => p.on('exit', (code, sig) => res(sig ? null : code)));
    return { p, lines, exited };
  };

  it('is bit-identical after a SIGKILL mid-run', async () => {
    const cfg = (out: string) => ({
      ...tinyMpoConfig(out),
      training: {
        batchSize: 4,
        microBatchSize: 2,
        learningRate: 1e-3,
        epochs: 3,
        checkpointEvery: 2,
        seed: 11,
      },
    });
    const straight = child(cfg(tmp('straight')));
    expect(await straight.exited).toBe(0);
    const want = straight.lines.at(-1)!;
    expect(want.done).toBe(true);

    const out = tmp('killed');
    const first = child(cfg(out));
    // Kill once a checkpoint exists and training has gone past it.
    await new Promise<void>((res) => {
      const t = setInterval(() => {
        if (first.lines.some((l) => (l.step as number) >= 3)) {
          clearInterval(t);
          first.p.kill('SIGKILL');
          res();
        }
      }, 20);
    });
    expect(await first.exited).toBeNull();
    expect(latestCheckpoint(out)?.state.step).toBeGreaterThanOrEqual(2);
    const second = child(cfg(out));
    expect(await second.exited).toBe(0);
    const got = second.lines.at(-1)!;
    expect(got.resumedFrom).toBeGreaterThanOrEqual(2);
    expect(got.hash).toBe(want.hash);
    // metrics.jsonl holds every step exactly once.
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    expect(steps).toEqual([...Array(steps.length).keys()].map((i) => i + 1));
  });
});
