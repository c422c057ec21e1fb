import { describe, expect, it } from 'vitest';
import { type Json, run, shmLeftovers } from './helpers.js';

// sizes: 1, odd (direct path), odd and larger than one round's window (reduce-scatter/all-gather)
const SIZES = '1,7,12345,70001,300007';

async function correct(ranks: number, env: NodeJS.ProcessEnv = {}) {
  const r = run({ ranks, env: { MPO_TEST_SCENARIO: 'correct', MPO_TEST_SIZES: SIZES, ...env } });
  const { exitCode, lines, stderr } = await r.done;
  expect(stderr).toBe('');
  expect(exitCode).toBe(0);
  const results = lines.map((l) => l.find((j) => 'ok' in j) as Json);
  for (const res of results) expect(res.ok).toBe(true);
  // every rank ends with bit-identical buffers
  const hashes = results.map((res) => JSON.stringify(res.hashes));
  expect(new Set(hashes).size).toBe(1);
  expect(shmLeftovers(r.launched.group)).toEqual([]);
  return results;
}

describe('shared-memory all-reduce', () => {
  it('2 ranks: sizes 1, odd, larger than a chunk; sum, avg, bf16; offset views', async () => {
    const [res] = await correct(2);
    // 300007 floats span several rounds of the default staging
    expect(300007).toBeGreaterThan(2 * Number(res?.chunkElems));
  });

  it('2 ranks with a small staging area (many pipelined rounds)', async () => {
    const [res] = await correct(2, { MPO_TEST_STAGING: String(64 * 1024), MPO_TEST_SMALL: '4096' });
    // three slots of one piece per rank: 64 KiB / 3 / 2 ranks / 4 bytes, rounded down to 16
    expect(Number(res?.chunkElems)).toBe(2720);
  });

  it('3 ranks (non power of two average)', async () => {
    await correct(3, { MPO_TEST_STAGING: String(96 * 1024) });
  });

  it('4 ranks', async () => {
    await correct(4, { MPO_TEST_STAGING: String(128 * 1024) });
  });

  it('a group of one is the identity', async () => {
    await correct(1);
  });

  it('repeated calls, several in flight, interleaved sizes, broadcast; two groups at once', async () => {
    const env = { MPO_TEST_SCENARIO: 'repeat', MPO_TEST_STAGING: String(128 * 1024), MPO_TEST_ITERS: '30' };
    const a = run({ ranks: 2, env });
    const b = run({ ranks: 3, env: { ...env, MPO_TEST_BCAST: String(1024 * 1024 + 3) } });
    expect(a.launched.group).not.toBe(b.launched.group);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    for (const r of [ra, rb]) {
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      for (const l of r.lines) expect(l.at(-1)?.ok).toBe(true);
    }
  });
});

describe('shard collectives for ZeRO (reduceScatterSum, allGather)', () => {
  async function shards(ranks: number, env: NodeJS.ProcessEnv = {}) {
    const r = run({ ranks, env: { MPO_TEST_SCENARIO: 'shards', ...env } });
    const { exitCode, lines, stderr } = await r.done;
    expect(stderr).toBe('');
    expect(exitCode).toBe(0);
    for (const l of lines) expect(l.at(-1)).toMatchObject({ ok: true, checked: 36 });
    expect(shmLeftovers(r.launched.group)).toEqual([]);
  }
  it('2 ranks: my shard gets the all-reduce bits, the rest is untouched; gather rebuilds all', async () => {
    await shards(2);
  });
  it('3 ranks with a small staging area (many rounds, shards of unequal length)', async () => {
    await shards(3, { MPO_TEST_STAGING: String(96 * 1024) });
  });
  it('4 ranks', async () => {
    await shards(4, { MPO_TEST_STAGING: String(128 * 1024) });
  });
});
