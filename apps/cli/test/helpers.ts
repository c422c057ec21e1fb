import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '../../..');
export const datasetsDir = join(repoRoot, 'datasets');
export const goldenDir = join(repoRoot, 'packages/engine/test/fixtures/golden-llama');
export const mpoBin = join(repoRoot, 'apps/cli/bin/mpo.js');
export const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `mpo-cli-${tag}-`));

export function writeJson(dir: string, name: string, value: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(value, null, 2));
  return p;
}

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  lines: Record<string, unknown>[];
}

/** Runs `mpo ...args` to completion (or until `onLine` returns 'kill'/'term'). */
export function mpo(
  args: string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    onLine?: (l: Record<string, unknown>, send: (s: NodeJS.Signals) => void) => void;
  } = {},
): Promise<Ran> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [mpoBin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const lines: Record<string, unknown>[] = [];
    p.stdout.on('data', (d) => {
      stdout += d;
      pending += d;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const l of parts) {
        if (!l.startsWith('{')) continue;
        const obj = JSON.parse(l);
        lines.push(obj);
        opts.onLine?.(obj, (s) => p.kill(s));
      }
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    p.on('close', (code, signal) => res({ code, signal, stdout, stderr, lines }));
  });
}
