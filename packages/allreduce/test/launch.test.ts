import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it, vi } from 'vitest';
import {
  assignCores,
  formatCoreList,
  getAffinity,
  groupNameFromJobId,
  launchMain,
  launchRanks,
  parseCoreList,
} from '../src/index.js';
import { fixtures, isAlive, type Json, run, threadCpus, waitUntil } from './helpers.js';

const report = join(fixtures, 'report.mjs');
const twoCores = getAffinity().length >= 2;

async function reportLines(r: ReturnType<typeof run>, ranks: number): Promise<Json[]> {
  return Promise.all(Array.from({ length: ranks }, (_, i) => r.waitFor(i, (j) => j.rank === i)));
}

describe('launcher', () => {
  it.skipIf(!twoCores)(
    'sets rank env and pins every thread of each rank to its own core (exec wrapper)',
    async () => {
      const r = run({
        ranks: 2,
        args: [report],
        env: { MPO_TEST_WAIT: '1' },
        devices: { kind: 'cpu', cores: [0, 1] },
      });
      const reps = await reportLines(r, 2);
      for (const [i, rep] of reps.entries()) {
        expect(rep).toMatchObject({
          rank: i,
          worldSize: 2,
          localRank: i,
          group: r.launched.group,
          cores: String(i),
          omp: '1',
        });
        expect(rep.ppid).toBe(process.pid); // the wrapper exec'd in place: the launcher is the parent
        const cpus = threadCpus(rep.pid as number);
        expect(cpus.length).toBeGreaterThan(3); // node runs several threads
        expect(new Set(cpus)).toEqual(new Set([String(i)]));
      }
      r.launched.kill('SIGKILL');
      await r.done;
    },
  );

  it.skipIf(!twoCores)(
    'without the wrapper, the rank pins itself from MPO_CPU_CORES (setAffinity on all threads)',
    async () => {
      const r = run({
        ranks: 2,
        args: [report],
        env: { MPO_TEST_WAIT: '1', MPO_TEST_MODE: 'self-pin' },
        devices: { kind: 'cpu', cores: [1, 0] },
        useExecHelper: false,
      });
      const reps = await reportLines(r, 2);
      expect(reps.map((x) => x.cpus)).toEqual(['1', '0']);
      for (const rep of reps) expect(new Set(threadCpus(rep.pid as number))).toEqual(new Set([rep.cpus]));
      r.launched.kill('SIGKILL');
      await r.done;
    },
  );

  it('GPU hosts: one CUDA_VISIBLE_DEVICES id per rank, no CPU pinning; group from the job id', async () => {
    const r = run({ ranks: 2, args: [report], devices: { kind: 'gpu', ids: [3, 5] }, jobId: 'job/17' });
    expect(r.launched.group).toBe(groupNameFromJobId('job/17'));
    const reps = await reportLines(r, 2);
    expect(reps.map((x) => x.group)).toEqual([r.launched.group, r.launched.group]);
    expect(reps.map((x) => x.cuda)).toEqual(['3', '5']);
    expect(reps.map((x) => x.cores)).toEqual([null, null]);
    expect((await r.done).exitCode).toBe(0);
    expect(() => launchRanks({ ranks: 3, command: 'true', devices: { kind: 'gpu', ids: [0, 1] } })).toThrow(
      /3 GPU ids/,
    );
  });

  it('a host of a multi-host trial: global RANK from the offset, WORLD_SIZE of the trial, LOCAL_* of the host', async () => {
    const r = run({ ranks: 2, args: [report], rankOffset: 4, worldSize: 6, useExecHelper: false });
    const reps = await Promise.all([0, 1].map((i) => r.waitFor(i, (j) => j.localRank === i)));
    expect(reps.map((x) => [x.rank, x.worldSize, x.localRank])).toEqual([
      [4, 6, 0],
      [5, 6, 1],
    ]);
    expect((await r.done).exitCode).toBe(0);
    expect(() => launchRanks({ ranks: 2, command: 'true', rankOffset: 5, worldSize: 6 })).toThrow(
      /do not fit a world of 6/,
    );
  });

  for (const helper of [true, false]) {
    it(`ranks die when the launcher is SIGKILLed (${helper ? 'exec wrapper' : 'dieWithParent in the rank'})`, async () => {
      const parent = spawn(process.execPath, [join(fixtures, 'parent.mjs')], {
        env: { ...process.env, MPO_TEST_HELPER: helper ? '1' : '0' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const line = await new Promise<string>((res, rej) => {
        createInterface({ input: parent.stdout }).once('line', res);
        parent.once('exit', () => rej(new Error('parent exited early')));
      });
      const pids = (JSON.parse(line) as { pids: number[] }).pids;
      expect(pids).toHaveLength(2);
      for (const pid of pids) expect(isAlive(pid)).toBe(true);
      parent.kill('SIGKILL');
      expect(await waitUntil(() => pids.every((p) => !isAlive(p)), 10_000)).toBe(true);
    });
  }

  it('launchMain returns the first failing rank exit code, 0 on success, 2 on usage errors', async () => {
    const quiet = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(await launchMain(['--ranks', '2', '--', 'sh', '-c', 'exit 0'])).toBe(0);
    expect(await launchMain(['--ranks', '2', '--', 'sh', '-c', 'exit $((RANK * 3))'])).toBe(3);
    expect(
      await launchMain(['--ranks', '2', '--', 'sh', '-c', '[ "$RANK" = 1 ] && kill -9 $$; sleep 0.2']),
    ).toBe(137);
    expect(await launchMain(['--', 'true'])).toBe(2);
    expect(await launchMain(['--ranks', '2'])).toBe(2);
    expect(await launchMain(['--ranks', '1', '--bogus', '--', 'true'])).toBe(2);
    quiet.mockRestore();
  });

  it('a failed rank brings the others down after the grace period', async () => {
    const l = launchRanks({
      ranks: 2,
      command: 'sh',
      args: ['-c', '[ "$RANK" = 0 ] && exit 7; exec sleep 30'],
      killGraceMs: 200,
      stdio: 'ignore',
    });
    const t0 = Date.now();
    const res = await l.exited;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(res.firstFailed).toBe(0);
    expect(res.exitCode).toBe(7);
    expect(res.exits[1]?.signal).toBe('SIGTERM');
  });
});

describe('helpers', () => {
  it('derives sanitised, distinct group names from job ids', () => {
    const a = groupNameFromJobId('sweep/42:trial#7 (retry)');
    expect(a).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(a.startsWith('sweep_42_trial_7__retry_-')).toBe(true);
    expect(groupNameFromJobId('a/b')).not.toBe(groupNameFromJobId('a:b'));
    expect(groupNameFromJobId('x'.repeat(1000)).length).toBeLessThanOrEqual(200);
    expect(groupNameFromJobId('..')).toMatch(/^_/);
    expect(() => groupNameFromJobId('')).toThrow();
  });

  it('parses and formats core lists, assigns cores per rank', () => {
    expect(parseCoreList('0,2-4, 7')).toEqual([0, 2, 3, 4, 7]);
    expect(formatCoreList([4, 0, 2, 3, 7])).toBe('0,2-4,7');
    expect(() => parseCoreList('3-1')).toThrow();
    expect(assignCores(2, [0, 1, 2, 3])).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(assignCores(3, [0, 1])).toEqual([[0], [1], [0]]);
    expect(assignCores(2, [5, 6, 7, 8], 1)).toEqual([[5], [6]]);
  });
});
