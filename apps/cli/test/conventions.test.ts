// CLI conventions: --version, --json, numeric flags refused with a clear
// message (exit 2), the progress helper (bar with rate and ETA on a terminal,
// JSON lines otherwise) and shell completion scripts that a real shell runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createProgress } from '../src/progress.js';
import { mpo, repoRoot, tmp } from './helpers.js';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'apps/cli/package.json'), 'utf8'));

describe('mpo --version', () => {
  it('prints the package version, also as JSON', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await mpo([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${pkg.version}\n`);
    }
    const j = await mpo(['version', '--json']);
    expect(JSON.parse(j.stdout)).toEqual({ version: pkg.version, node: process.version });
  });
});

describe('numeric flags', () => {
  it('refuses what is not a number, or out of range, naming the flag (exit 2, no tight loop)', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['runs', 'watch', 'x', '--interval', 'abc'],
        /--interval must be a number >= 0.05 and <= 3600, got "abc"/,
      ],
      [['runs', 'watch', 'x', '--interval', '0'], /--interval must be a number >= 0.05/],
      [['runs', 'list', '--limit', '500'], /--limit must be an integer >= 1 and <= 200, got "500"/],
      [['runs', 'list', '--offset=-1'], /--offset must be an integer >= 0, got "-1"/],
      [['runs', 'metrics', 'x', '--points', '1.5'], /--points must be an integer >= 1 and <= 1024/],
      [['score', '--model', 'm', '--data', 'd', '--batch', '0'], /--batch must be an integer >= 1, got "0"/],
      [['testbed', 'build', '--threads', 'two'], /--threads must be an integer >= 1, got "two"/],
      [
        ['testbed', 'build', '--testbed', 'tiny-multilingual-transfer', '--safety-shares', '0.1,0.03'],
        /--safety-shares must be three numbers in \[0, 1\], one per sister language \(qaa,qab,qac\), got '0.1,0.03'/,
      ],
      [
        ['testbed', 'build', '--testbed', 'tiny-multilingual-transfer', '--alignments', '0.8,0.6,1.5'],
        /--alignments must be three numbers in \[0, 1\]/,
      ],
      [
        ['testbed', 'build', '--alignments', '0.8,0.6,0.4'],
        /apply to --testbed tiny-multilingual-transfer only/,
      ],
      [
        ['testbed', 'build', '--testbed', 'tiny-multilingual-transfer', '--unsafe-shares', '0,0,-0.2'],
        /--unsafe-shares must be three numbers in \[0, 1\], one per sister language \(qaa,qab,qac\), got '0,0,-0.2'/,
      ],
      [
        ['testbed', 'build', '--unsafe-shares', '0,0,0.3'],
        /apply to --testbed tiny-multilingual-transfer only/,
      ],
      [
        ['testbed', 'build', '--testbed', 'tiny-multilingual-transfer', '--safety-by', 'tag'],
        /--safety-by must be one of prompt, category, got 'tag'/,
      ],
      [
        ['testbed', 'measure', '--transfer', '--harmless-pairs', 'many'],
        /--harmless-pairs must be an integer >= 0, got "many"/,
      ],
      [['testbed', 'measure', '--harmless-pairs', '10'], /--harmless-pairs applies to --transfer/],
      [['testbed', 'measure', '--step-seed=2'], /--step-seed applies to --transfer/],
      [
        ['testbed', 'measure', '--transfer', '--step-seed=1.5'],
        /--step-seed must be an integer >= 0, got "1.5"/,
      ],
      [['reproduce', '--max-ppl-ratio', '0.5'], /--max-ppl-ratio must be a number >= 1, got "0.5"/],
      [
        ['eval', '--model', 'builtin:x', '--max-prompts', 'many'],
        /--max-prompts must be an integer, got "many"/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await mpo(args, { env: { MPO_API_URL: 'http://127.0.0.1:9', MPO_TOKEN: 't' } });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });
});

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return {
    chunks,
    stream: { isTTY, write: (s: string) => chunks.push(s) } as unknown as NodeJS.WriteStream,
  };
}

describe('createProgress', () => {
  it('draws a bar with rate and ETA on a terminal', () => {
    let t = 0;
    const { chunks, stream } = fakeStream(true);
    const p = createProgress({ label: 'score', total: 100, unit: 'pairs/s', stream, now: () => t });
    t = 10_000;
    p.update(25, 'loss 0.5');
    // 25 in 10 s: 2.50 pairs/s, 75 left: 30 s.
    expect(chunks.at(-1)).toBe(
      `\r\x1b[2Kscore [######..................] 25/100 2.50 pairs/s ETA 30s  loss 0.5`,
    );
    p.finish();
    expect(chunks.at(-1)).toBe('\n');
  });

  it('writes throttled JSON lines otherwise (first and last always), and restarts per phase', () => {
    let t = 0;
    const { chunks, stream } = fakeStream(false);
    const p = createProgress({ label: 'reward-gap', total: 4, stream, now: () => t, everyMs: 1_000 });
    p.update(0);
    t = 500;
    p.update(1); // within a second of the last line: not sent
    t = 2_000;
    p.update(2);
    t = 2_100;
    p.update(4); // the last: sent
    p.phase('multijail', 10);
    const lines = chunks.map((c) => JSON.parse(c));
    expect(lines).toEqual([
      { type: 'progress', phase: 'reward-gap', done: 0, total: 4, rate: 0, etaSeconds: null },
      { type: 'progress', phase: 'reward-gap', done: 2, total: 4, rate: 1, etaSeconds: 2 },
      { type: 'progress', phase: 'reward-gap', done: 4, total: 4, rate: 1.905, etaSeconds: 0 },
      { type: 'progress', phase: 'multijail', done: 0, total: 10, rate: 0, etaSeconds: null },
    ]);
  });

  it('grows its total without losing what is done or the rate (a sweep learns step counts as trials start)', () => {
    let t = 0;
    const { chunks, stream } = fakeStream(false);
    const p = createProgress({ label: 'reproduce', total: 40, stream, now: () => t, everyMs: 10_000 });
    p.update(0);
    t = 20_000;
    p.update(20); // 20 in 20 s
    p.setTotal(80); // two more trials started
    t = 25_000;
    p.update(25); // within 10 s of the last line: not sent
    t = 40_000;
    p.update(40);
    expect(chunks.map((c) => JSON.parse(c))).toEqual([
      { type: 'progress', phase: 'reproduce', done: 0, total: 40, rate: 0, etaSeconds: null },
      { type: 'progress', phase: 'reproduce', done: 20, total: 40, rate: 1, etaSeconds: 20 },
      // 40 in 40 s since the phase began, 40 of 80 left.
      { type: 'progress', phase: 'reproduce', done: 40, total: 80, rate: 1, etaSeconds: 40 },
    ]);
  });

  it('counts the rate from the first update when watching begins late (rateFromFirstUpdate)', () => {
    let t = 0;
    const { chunks, stream } = fakeStream(false);
    const p = createProgress({
      label: 'reproduce',
      total: 100,
      stream,
      now: () => t,
      rateFromFirstUpdate: true,
    });
    t = 1_000;
    p.update(30); // 30 done before anyone looked: no rate yet
    t = 11_000;
    p.update(40); // 10 more in 10 s: 1/s, 60 left
    p.phase('evaluate', 10);
    t = 12_000;
    p.update(4);
    expect(chunks.map((c) => JSON.parse(c))).toEqual([
      { type: 'progress', phase: 'reproduce', done: 30, total: 100, rate: 0, etaSeconds: null },
      { type: 'progress', phase: 'reproduce', done: 40, total: 100, rate: 1, etaSeconds: 60 },
      { type: 'progress', phase: 'evaluate', done: 0, total: 10, rate: 0, etaSeconds: null },
      { type: 'progress', phase: 'evaluate', done: 4, total: 10, rate: 0, etaSeconds: null },
    ]);
  });

  it('is JSON lines on a terminal too with --json', () => {
    const { chunks, stream } = fakeStream(true);
    createProgress({ label: 'x', total: 1, stream, json: true }).update(1);
    expect(JSON.parse(chunks[0]!)).toMatchObject({ type: 'progress', done: 1, total: 1 });
  });
});

describe('mpo completion', () => {
  /** What bash completes for the words typed so far (the last one may be partial). */
  const bashComplete = (script: string, typed: string[]) => {
    const words = typed.map((w) => `'${w}'`).join(' ');
    const out = execFileSync(
      'bash',
      [
        '-c',
        `source "$1"; COMP_WORDS=(${words}); COMP_CWORD=${typed.length - 1}; _mpo; printf '%s\\n' "\${COMPREPLY[@]}"`,
        '_',
        script,
      ],
      { encoding: 'utf8' },
    );
    return out.split('\n').filter(Boolean);
  };

  it('bash: commands, subcommands and flags from the registry', async () => {
    const r = await mpo(['completion', 'bash']);
    expect(r.code).toBe(0);
    const script = join(tmp('completion'), 'mpo.bash');
    writeFileSync(script, r.stdout);
    expect(bashComplete(script, ['mpo', 'ru'])).toEqual(['runs']);
    expect(bashComplete(script, ['mpo', 'runs', ''])).toEqual([
      'submit',
      'watch',
      'metrics',
      'list',
      'cancel',
    ]);
    expect(bashComplete(script, ['mpo', 'runs', 'list', '--li'])).toEqual(['--limit']);
    expect(bashComplete(script, ['mpo', 'runs', 'metrics', 'x', '--fo'])).toEqual(['--format']);
    expect(bashComplete(script, ['mpo', 'completion', ''])).toEqual(['bash', 'zsh']);
    expect(bashComplete(script, ['mpo', '--v'])).toEqual(['--version']);
  });

  it('zsh: a script zsh parses (when zsh is installed)', async () => {
    const r = await mpo(['completion', 'zsh']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^#compdef mpo/);
    expect(r.stdout).toContain(
      "'runs:submit, watch, list, cancel runs and export their metrics (talks to the API)'",
    );
    const zsh = spawnSync('zsh', ['-n'], { input: r.stdout, encoding: 'utf8' });
    if (zsh.error) return; // no zsh on this machine: the bash test above covers the generator
    expect(zsh.stderr).toBe('');
    expect(zsh.status).toBe(0);
  });

  it('refuses other shells', async () => {
    const r = await mpo(['completion', 'fish']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expected bash or zsh, got 'fish'/);
  });
});
