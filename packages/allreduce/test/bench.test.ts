import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allreduceBench, c10dBackends, DEFAULT_BENCH_SIZES, packageRoot, parseSize } from '../src/index.js';

describe('allreduce bench', () => {
  it('default sizes run from 4 KiB to 256 MiB', () => {
    expect(DEFAULT_BENCH_SIZES[0]).toBe(4096);
    expect(DEFAULT_BENCH_SIZES.at(-1)).toBe(256 * 1024 * 1024);
    expect(parseSize('64M')).toBe(64 << 20);
    expect(parseSize('4KiB')).toBe(4096);
    expect(parseSize('123')).toBe(123);
  });

  it('reports bytes, timeUs, algbwGBps, busbwGBps with nccl-tests definitions', async () => {
    for (const ranks of [2, 3]) {
      const res = await allreduceBench({ ranks, sizes: [4096, 1 << 20], iters: 20, trials: 2, out: null });
      expect(res.map((r) => r.bytes)).toEqual([4096, 1 << 20]);
      for (const r of res) {
        expect(r.timeUs).toBeGreaterThan(0);
        expect(r.algbwGBps).toBeCloseTo(r.bytes / (r.timeUs * 1e-6) / 1e9, 2);
        expect(r.busbwGBps).toBeCloseTo((r.algbwGBps * 2 * (ranks - 1)) / ranks, 2);
        expect(r.ranks).toBe(ranks);
        // memcpy measured in the same run, and the ratio reported beside it (issue 15 item 6).
        expect(r.memcpyGBps).toBeGreaterThan(0);
        expect(r.busbwOverMemcpy).toBeCloseTo(r.busbwGBps / r.memcpyGBps, 2);
      }
    }
  });

  it.skipIf(!c10dBackends().includes('gloo'))(
    'times gloo (libtorch ProcessGroupGloo) with the same loop',
    async () => {
      const res = await allreduceBench({
        ranks: 2,
        sizes: [4096, 1 << 20],
        iters: 5,
        trials: 1,
        backend: 'gloo',
        out: null,
      });
      expect(res.map((r) => [r.bytes, r.backend])).toEqual([
        [4096, 'gloo'],
        [1 << 20, 'gloo'],
      ]);
      for (const r of res) expect(r.timeUs).toBeGreaterThan(0);
    },
  );

  it('the CLI prints one JSON object per size', () => {
    const r = spawnSync(
      process.execPath,
      [
        join(packageRoot, 'dist/bench-cli.js'),
        '--ranks',
        '2',
        '--json',
        '--sizes',
        '4K,64K',
        '--iters',
        '10',
        '--trials',
        '1',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.map((l) => l.bytes)).toEqual([4096, 65536]);
    for (const l of lines)
      expect(Object.keys(l)).toEqual(expect.arrayContaining(['bytes', 'timeUs', 'algbwGBps', 'busbwGBps']));
  });
});
