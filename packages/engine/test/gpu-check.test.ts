// scripts/gpu-check.sh --dry-run (issue 15 item 4): the GPU check's own build and steps, on the CPU.
// It builds the C++ harness (harness/, CMake) against this machine's libtorch and runs every step the
// GPU run does (golden fixture, CPU/device MPO step in fp32 and bf16, a bf16 run, the benchmark beside
// PyTorch) at a small size. The build folder (build/gpu-check) is kept, so later runs only relink.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers.js';

const script = join(repoRoot, 'scripts/gpu-check.sh');
const haveCmake = spawnSync('cmake', ['--version']).status === 0;
const torchPython = ['python3', '/usr/bin/python3'].find(
  (p) => spawnSync(p, ['-c', 'import torch']).status === 0,
);

function runScript(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ status: number | null; stderr: string }> {
  const child = spawn('bash', [script, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stderr })));
}

describe.skipIf(!haveCmake)('scripts/gpu-check.sh --dry-run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpo-gpu-check-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('builds the harness and passes every check on the CPU, writing the JSON summary', async () => {
    const out = join(dir, 'summary.json');
    // Asynchronously: a first build takes minutes, and a blocked event loop stalls vitest's worker RPC.
    const r = await runScript(['--dry-run', '--out', out], { ...process.env, MPO_BUILD_JOBS: '2' });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(r.stderr).toMatch(/mpo-engine-check: libtorch \d+\.\d+\.\d+ \(CPU\)/);
    const s = JSON.parse(readFileSync(out, 'utf8'));
    expect(s.dryRun).toBe(true);
    expect(s.device).toBe('cpu');
    expect(s.pass).toBe(true);
    const c = s.checks;
    // Tolerances of the issue: golden and the fp32 step within 1e-4.
    expect(c.golden.examples).toBeGreaterThan(0);
    expect(c.golden.maxError).toBeLessThanOrEqual(1e-4);
    expect(c.stepFp32.lossError).toBeLessThanOrEqual(1e-4);
    expect(c.stepFp32.gradMaxError).toBeLessThanOrEqual(1e-4);
    expect(c.stepFp32.paramMaxError).toBeLessThanOrEqual(1e-4);
    expect(c.stepBf16.gradCosine).toBeGreaterThanOrEqual(0.99);
    // bf16 is not fp32: a check that found no difference at all would not be exercising bf16.
    expect(c.stepBf16.lossRelError).toBeGreaterThan(0);
    expect(c.bf16Run.last5Mean).toBeLessThan(0.5 * c.bf16Run.losses[0]);
    // libtorch c10d through packages/allreduce/native/c10d_core.h: gloo between two processes (built
    // wherever gloo's headers are: Debian's libgloo-dev, installed by scripts/setup.mjs).
    if (existsSync('/usr/include/gloo/algorithm.h')) {
      expect(s.c10d.built).toBe(true);
      expect(c['c10d-gloo']).toMatchObject({ pass: true, world: 2 });
    } else expect(s.c10d.built).toBe(false);
    for (const dtype of ['bfloat16', 'float32']) {
      const row = s.bench[dtype];
      expect(row.engine.tokensPerSec).toBeGreaterThan(0);
      expect(row.engine.tokensPerStep).toBe(s.bench.tokensPerStep);
      if (torchPython) {
        expect(row.torch.tokensPerSec).toBeGreaterThan(0);
        expect(row.torch.numParameters).toBe(row.engine.numParameters);
      } else {
        console.warn('no Python with torch here: the PyTorch side of the benchmark was skipped');
        expect(row.torch.skipped).toMatch(/no torch/);
      }
    }
  }, 1_200_000);

  it('rejects an unknown argument before building anything', () => {
    const r = spawnSync('bash', [script, '--gpus', '2'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument --gpus/);
  });
});
