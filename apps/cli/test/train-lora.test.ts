// `mpo train` with a lora block: trains adapters on the golden model, writes merged weights to
// final/ and the PEFT adapter folder to adapter/.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { goldenDir, mpo, repoRoot, tmp, writeJson } from './helpers.js';

describe('mpo train with lora', () => {
  it('trains adapters and exports merged weights plus PEFT adapter files', async () => {
    const dir = tmp('train-lora');
    const out = join(dir, 'out');
    const cfg = writeJson(dir, 'c.json', {
      model: goldenDir,
      data: { format: 'pretokenized', path: join(goldenDir, 'pairs.jsonl'), heldOut: 0 },
      method: 'dpo',
      output: out,
      threads: 1,
      training: { batchSize: 4, microBatchSize: 2, learningRate: 0.01, maxSteps: 3, warmupRatio: 0, seed: 1 },
      lora: {
        rank: 4,
        alpha: 16,
        dropout: 0.05,
        targetModules: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'],
      },
    });
    const r = await mpo(['train', '--config', cfg, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const info = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const loraInfo = info.find((l) => l.type === 'lora');
    expect(loraInfo).toMatchObject({ rank: 4, alpha: 16 });
    const steps = r.lines.filter((l) => l.type === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(r.lines.at(-1)).toMatchObject({ type: 'done', step: 3, finalDir: join(out, 'final') });

    const adapter = JSON.parse(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
    expect(adapter).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 16,
      base_model_name_or_path: goldenDir,
    });
    // base + adapter (loaded as PEFT would) = the merged export.
    const withAdapter = await Model.load(goldenDir, { threads: 1 });
    await withAdapter.loadAdapter(join(out, 'adapter'));
    const merged = await Model.load(join(out, 'final'), { threads: 1 });
    expect(existsSync(join(out, 'final', 'tokenizer_config.json'))).toBe(true);
    const batch = { sequences: [[1, 5, 9, 13, 17, 21, 25]], promptLengths: [3] };
    const a = await withAdapter.score(batch);
    const b = await merged.score(batch);
    expect(Math.abs(a.sumLogp[0]! - b.sumLogp[0]!)).toBeLessThan(1e-4);
    const base = await Model.load(goldenDir, { threads: 1 });
    expect(Math.abs((await base.score(batch)).sumLogp[0]! - a.sumLogp[0]!)).toBeGreaterThan(1e-4);
    for (const m of [withAdapter, merged, base]) m.dispose();
  });
});

describe('mpo plan --lora-targets', () => {
  const llama8b = join(repoRoot, 'examples/plan/llama-3.1-8b.config.json');
  const plan = (...extra: string[]) =>
    mpo([
      'plan',
      '--model',
      llama8b,
      '--dtype',
      'bf16',
      '--batch',
      '1',
      '--cutoff',
      '1024',
      '--lora',
      '16',
      '--json',
      ...extra,
    ]);

  it('counts adapters on the named projections only; an unknown name is an input error', async () => {
    const all = JSON.parse((await plan()).stdout);
    const qv = JSON.parse((await plan('--lora-targets', 'q_proj,v_proj')).stdout);
    // Llama-3.1-8B, 32 layers, hidden 4096, 8 KV heads of 128: r·(4096+4096) + r·(4096+1024) per layer =
    // 6,815,744 (PEFT's print_trainable_parameters for r=16 on q_proj, v_proj).
    expect(qv.model.trainableParameters).toBe(32 * 16 * (4096 + 4096 + 4096 + 1024));
    expect(all.model.trainableParameters).toBe(41_943_040); // the default: all seven (test/plan.test.ts)
    const bad = await plan('--lora-targets', 'q_proj,qkv');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown LoRA target 'qkv'/);
  });
});
