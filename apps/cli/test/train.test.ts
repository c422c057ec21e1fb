import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { goldenDir, mpo, tmp, writeJson } from './helpers.js';

const dpoConfig = (output: string, training: Record<string, unknown> = {}) => ({
  model: goldenDir,
  data: { format: 'pretokenized', path: join(goldenDir, 'pairs.jsonl'), heldOut: 0 },
  method: 'dpo',
  output,
  threads: 1,
  training: {
    batchSize: 4,
    microBatchSize: 2,
    learningRate: 0.005,
    epochs: 3,
    warmupRatio: 0,
    seed: 1,
    ...training,
  },
});

async function maxWeightDiff(a: string, b: string): Promise<number> {
  const [ma, mb] = await Promise.all([Model.load(a, { threads: 1 }), Model.load(b, { threads: 1 })]);
  const pa = ma.paramBuffer();
  const pb = mb.paramBuffer();
  expect(pa.length).toBe(pb.length);
  let d = 0;
  for (let i = 0; i < pa.length; i++) d = Math.max(d, Math.abs(pa[i]! - pb[i]!));
  return d;
}

describe('mpo train', () => {
  it('prints JSON lines for every step, checkpoint and the end', async () => {
    const dir = tmp('train');
    const cfg = writeJson(dir, 'c.json', dpoConfig(join(dir, 'out')));
    const r = await mpo(['train', '--config', cfg, '--json']);
    expect(r.code).toBe(0);
    // stderr carries informational JSON events only (data and reference-cache summaries).
    const info = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).type);
    expect(info).toEqual(['data', 'reference']);
    const steps = r.lines.filter((l) => l.type === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(steps[0]).toMatchObject({ totalSteps: 9, metrics: expect.objectContaining({ lr: 0.005 }) });
    expect(r.lines.filter((l) => l.type === 'checkpoint').map((c) => c.step)).toEqual([9]);
    expect(r.lines[0]).toEqual({ type: 'start', totalSteps: 9, resumedFrom: null });
    expect(r.lines.at(-1)).toMatchObject({
      type: 'done',
      step: 9,
      stopped: false,
      finalDir: join(dir, 'out', 'final'),
    });
    // Every line satisfies the worker's protocol parser.
    const { parseTrainerLine } = await import('@mpo/queue');
    for (const line of r.stdout.trim().split('\n'))
      expect(parseTrainerLine(line), line).toMatchObject({ ok: true });
  });

  it('trains from a LLaMA-Factory YAML as it is, listing ignored fields and refusing what it cannot honour', async () => {
    const dir = tmp('llamafactory');
    // The official MPO repository's layout (examples/train_mpo/*.yaml), on the golden model and pairs.
    const yaml = (over = '') => `### model
model_name_or_path: ${goldenDir}
### method
stage: dpo
do_train: true
finetuning_type: full
deepspeed: examples/deepspeed/ds_z2_config.json
pref_beta: 0.1
pref_loss: sigmoid
### dataset
dataset: ${join(goldenDir, 'pairs.jsonl')}
cutoff_len: 1024
overwrite_cache: true
preprocessing_num_workers: 16
### output
output_dir: out
logging_steps: 1
plot_loss: true
save_strategy: 'no'
### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
learning_rate: 5.0e-3
num_train_epochs: 1
lr_scheduler_type: cosine
warmup_ratio: 0.0
seed: 1
${over}`;
    writeFileSync(join(dir, 'dpo.yaml'), yaml());
    const r = await mpo(['train', '--config', join(dir, 'dpo.yaml'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/LLaMA-Factory fields ignored \(5\)/);
    for (const f of [
      'deepspeed',
      'overwrite_cache',
      'preprocessing_num_workers',
      'logging_steps',
      'plot_loss',
    ])
      expect(r.stderr).toContain(`  ${f}: `);
    // 12 pairs, 2 × 2 per step, one epoch: 3 steps at the YAML's learning rate, into output_dir next to the YAML.
    const steps = r.lines.filter((l) => l.type === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(steps[0]).toMatchObject({ metrics: expect.objectContaining({ lr: 0.005 }) });
    expect(r.lines.at(-1)).toMatchObject({ type: 'done', finalDir: join(dir, 'out', 'final') });
    // The same training from our JSON config reaches the same weights.
    const ours = writeJson(dir, 'c.json', {
      ...dpoConfig(join(dir, 'ours'), { epochs: 1 }),
      data: { format: 'pretokenized', path: join(goldenDir, 'pairs.jsonl') },
    });
    expect((await mpo(['train', '--config', ours, '--json'])).code).toBe(0);
    expect(await maxWeightDiff(join(dir, 'out', 'final'), join(dir, 'ours', 'final'))).toBe(0);

    writeFileSync(join(dir, 'lora.yaml'), yaml().replace('finetuning_type: full', 'finetuning_type: lora'));
    const lora = await mpo(['train', '--config', join(dir, 'lora.yaml')]);
    expect(lora.code).toBe(3);
    expect(lora.stderr).toMatch(
      /lora\.yaml:6:18: finetuning_type: "lora": only full fine-tuning is supported/,
    );
  });

  it('lists every config problem and exits 3', async () => {
    const dir = tmp('bad');
    const cfg = writeJson(dir, 'c.json', { model: 1, method: 'nope', training: { batchSize: 0 }, data: {} });
    const r = await mpo(['train', '--config', cfg]);
    expect(r.code).toBe(3);
    // Each problem with the file, line and column of its field (or of the object that lacks it).
    for (const path of ['model', 'method', 'training.batchSize', 'data.format', 'data.path', 'output']) {
      expect(r.stderr).toMatch(new RegExp(`c\\.json:\\d+:\\d+: ${path.replace('.', '\\.')}: `));
    }
    expect(r.stderr).toMatch(/c\.json:5:\d+: training\.batchSize: /); // {, model, method, training: {, batchSize
  });

  it("--preset NAME fills MPO's per-backbone values and says which preset does not fit", async () => {
    const dir = tmp('preset');
    const cfg = writeJson(dir, 'c.json', { ...dpoConfig(join(dir, 'out')), training: { maxSteps: 1 } });
    const bad = await mpo(['train', '--config', cfg, '--preset', 'gemma2-9b']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/preset: preset "gemma2-9b" holds MPO's Table 8 values/);
    const unknown = await mpo(['train', '--config', cfg, '--preset', 'llama-3']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/preset: must be one of llama3\.1-8b, gemma2-9b, qwen2\.5-7b/);
  });

  it('--dtype bf16 --activation-checkpointing trains in mixed precision; a bad --dtype exits 3', async () => {
    const dir = tmp('bf16');
    const cfg = writeJson(dir, 'c.json', dpoConfig(join(dir, 'out')));
    const r = await mpo([
      'train',
      '--config',
      cfg,
      '--json',
      '--max-steps',
      '2',
      '--dtype',
      'bf16',
      '--activation-checkpointing',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const steps = r.lines.filter((l) => l.type === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2]);
    for (const s of steps) expect(Number.isFinite(s.loss)).toBe(true);
    const bad = await mpo(['train', '--config', cfg, '--dtype', 'fp8']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/dtype: must be float32 \(fp32\), bfloat16 \(bf16\) or float16 \(fp16\)/);
  });

  it('names a missing config (exit 4) and the line of a JSON syntax error (exit 3)', async () => {
    const dir = tmp('io');
    const missing = await mpo(['train', '--config', join(dir, 'none.json')]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/none\.json: no such file/);
    const broken = join(dir, 'broken.json');
    (await import('node:fs')).writeFileSync(broken, '{\n  "model": "x",\n  "method": dpo\n}\n');
    const bad = await mpo(['train', '--config', broken]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/broken\.json:3:\d+: invalid JSON/);
    expect((await mpo(['train'])).code).toBe(2);
  });

  it('on SIGTERM finishes the step, checkpoints, exits 130, and resumes to the same weights', async () => {
    const dir = tmp('term');
    const straight = await mpo([
      'train',
      '--config',
      writeJson(dir, 'a.json', dpoConfig(join(dir, 'a'), { epochs: 4 })),
      '--json',
    ]);
    expect(straight.code).toBe(0);
    const cfg = writeJson(dir, 'b.json', dpoConfig(join(dir, 'b'), { epochs: 4 }));
    let sent = false;
    const stopped = await mpo(['train', '--config', cfg, '--json'], {
      onLine: (l, send) => {
        if (l.type === 'step' && (l.step as number) >= 2 && !sent) {
          sent = true;
          send('SIGTERM');
        }
      },
    });
    expect(stopped.code).toBe(130);
    const stop = stopped.lines.at(-1)!;
    expect(stop).toMatchObject({ type: 'done', stopped: true });
    expect(stopped.lines.filter((l) => l.type === 'checkpoint').length).toBe(1);
    const resumed = await mpo(['train', '--config', cfg, '--json']);
    expect(resumed.code).toBe(0);
    const done = resumed.lines.at(-1)!;
    expect(done.resumedFrom).toBe(stop.step);
    expect(done.weightsHash).toBe(straight.lines.at(-1)!.weightsHash);
  });
});

describe('data-parallel training through mpo launch', () => {
  it('2 ranks reach the weights of 1 rank on the same global batch, and the ranks agree', async () => {
    const dir = tmp('dp');
    const one = await mpo([
      'train',
      '--config',
      writeJson(dir, '1.json', dpoConfig(join(dir, 'one'))),
      '--json',
    ]);
    expect(one.code).toBe(0);
    const two = await mpo([
      'launch',
      '--ranks',
      '2',
      '--',
      process.execPath,
      join(import.meta.dirname, '../bin/mpo.js'),
      'train',
      '--config',
      writeJson(dir, '2.json', dpoConfig(join(dir, 'two'))),
      '--json',
    ]);
    expect(two.stderr).not.toMatch(/error|fail/i);
    expect(two.code).toBe(0);
    // Rank 0 alone reports; every rank checked the others' weight hashes (trainer hashCheckEvery).
    expect(two.lines.filter((l) => l.type === 'done')).toHaveLength(1);
    expect(await maxWeightDiff(join(dir, 'one', 'final'), join(dir, 'two', 'final'))).toBeLessThan(1e-5);
    // Logged metrics are reduced across ranks: rank 0 reports the whole global batch, as 1 rank does (not its
    // shard at 1/world weight).
    type Step = { type: string; metrics: Record<string, unknown> };
    const steps = (r: { lines: Record<string, unknown>[] }) =>
      (r.lines as Step[]).filter((l) => l.type === 'step').map((l) => l.metrics);
    const [m1, m2] = [steps(one), steps(two)];
    expect(m2).toHaveLength(m1.length);
    const compared = /^(loss|rewards\/|logps\/|rg\/target)/;
    m1.forEach((m, i) => {
      const keys = Object.keys(m).filter((k) => compared.test(k));
      expect(keys.length).toBeGreaterThan(3);
      for (const k of keys) expect(m2[i]![k] as number, `step ${i + 1} ${k}`).toBeCloseTo(m[k] as number, 4);
    });
  });

  it('ZeRO-2 through mpo launch ends with the same weights as the plain 2-rank run, bit for bit', async () => {
    const dir = tmp('zero');
    const launch2 = (name: string, training: Record<string, unknown>) =>
      mpo([
        'launch',
        '--ranks',
        '2',
        '--',
        process.execPath,
        join(import.meta.dirname, '../bin/mpo.js'),
        'train',
        '--config',
        writeJson(dir, `${name}.json`, dpoConfig(join(dir, name), { epochs: 1, ...training })),
        '--json',
      ]);
    const plain = await launch2('plain', {});
    const zero = await launch2('zero', { zeroStage: 2 });
    for (const r of [plain, zero]) {
      expect(r.stderr).not.toMatch(/error|fail/i);
      expect(r.code).toBe(0);
    }
    const hash = (r: typeof plain) => r.lines.find((l) => l.type === 'done')?.weightsHash;
    expect(hash(zero)).toBeDefined();
    expect(hash(zero)).toBe(hash(plain));
  });
});
