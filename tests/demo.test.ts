// `npm run demo` when a step fails: it stops the API and worker it started, says which step failed and
// where that step's log is, and exits non-zero. The failure is forced the way a user meets one: the
// transfer testbed (MPO_TRANSFER_TESTBED_DIR, packages/trainer builtins) is not a model, so `mpo reproduce
// --quick` fails at its evaluation of the base model, after the API and the worker are up.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function runDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(root, 'scripts/demo.mjs')], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      out += b;
    });
    child.on('exit', (code) => done({ code, out }));
  });
}

describe('demo failure', () => {
  it('stops the API and the worker it started and names the failed step and its log', async () => {
    const notAModel = mkdtempSync(join(tmpdir(), 'mpo-demo-bad-model-'));
    cleanup.push(notAModel);
    writeFileSync(join(notAModel, 'config.json'), '{"model_type": "not-a-model"}');
    const { code, out } = await runDemo({
      MPO_TRANSFER_TESTBED_DIR: notAModel,
      PORT: String(20_000 + Math.floor(Math.random() * 20_000)),
      LOG_LEVEL: 'warn',
    });
    const work = /all logs in (\S+)\)/.exec(out)?.[1];
    if (work) cleanup.push(work);
    expect(code, out).toBe(1);
    expect(out).toMatch(/demo failed at step 4\/4 \(reproduce\): mpo reproduce --quick .* failed/);
    const log = /logs: (\S+mpo-reproduce\.log)/.exec(out)?.[1];
    expect(log, out).toBeDefined();
    expect(readFileSync(log!, 'utf8')).toMatch(/^\$ mpo reproduce --quick/);
    const pids = [...out.matchAll(/(api|worker) started \(pid (\d+)/g)].map(
      (m) => [m[1], Number(m[2])] as const,
    );
    expect(pids.map(([name]) => name)).toEqual(['api', 'worker']);
    for (const [name, pid] of pids) expect(alive(pid), `${name} (pid ${pid}) still running`).toBe(false);
    expect(existsSync(join(work!, 'api.log'))).toBe(true);
  }, 120_000);
});
