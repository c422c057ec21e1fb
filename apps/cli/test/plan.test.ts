import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mpo, repoRoot } from './helpers.js';

const llama8b = join(repoRoot, 'examples/plan/llama-3.1-8b.config.json');

describe('mpo plan', () => {
  it('--json: byte counts per component and a boolean fits (the paper setting, deepspeed layout)', async () => {
    const args = ['--model', llama8b, '--ranks', '8', '--dtype', 'bf16', '--zero', '2'];
    const r = await mpo([
      'plan',
      ...args,
      '--batch',
      '2',
      '--cutoff',
      '1024',
      '--checkpointing',
      '--layout',
      'deepspeed',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.fits).toBe(true);
    expect(p.model.parameters).toBe(8_030_261_248);
    for (const k of ['weights', 'gradients', 'optimizer', 'activations', 'workspace', 'total'])
      expect(Number.isInteger(p.perRank[k]), k).toBe(true);
    const text = await mpo(['plan', ...args, '--batch', '2', '--cutoff', '1024', '--device-memory', '10']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/does NOT fit in 10\.00 GB/);
  });

  it('bad flags name the flag and exit 2; a missing model exits 4', async () => {
    const bad = await mpo(['plan', '--model', llama8b, '--batch', '2', '--cutoff', '1024', '--zero', '3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--zero must be 0, 1 or 2/);
    const noBatch = await mpo(['plan', '--model', llama8b, '--cutoff', '1024']);
    expect(noBatch.code).toBe(2);
    expect(noBatch.stderr).toMatch(/--batch must be an integer/);
    const missing = await mpo([
      'plan',
      '--model',
      '/nonexistent/config.json',
      '--batch',
      '1',
      '--cutoff',
      '8',
    ]);
    expect(missing.code).toBe(4);
  });
});
