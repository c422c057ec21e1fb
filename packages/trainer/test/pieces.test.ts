import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseTrainConfig } from '../src/config.js';
import { assertRanksAgree } from '../src/loop.js';
import { chunks, epochOrder, shard } from '../src/order.js';
import { cachedReference, concatScores, sliceScores } from '../src/reference.js';
import { cosineWithWarmup } from '../src/schedule.js';

describe('cosine schedule with 10% warmup', () => {
  it('matches hand-worked values', () => {
    // total 20 → warmup W = 2 steps: lr·1/2, lr·2/2; then p = (s−2)/18.
    expect(cosineWithWarmup(0, 20, 1e-3)).toBeCloseTo(5e-4, 15);
    expect(cosineWithWarmup(1, 20, 1e-3)).toBeCloseTo(1e-3, 15);
    expect(cosineWithWarmup(2, 20, 1e-3)).toBeCloseTo(1e-3, 15);
    // s = 11: p = 0.5 → ½(1 + cos(π/2)) = 0.5
    expect(cosineWithWarmup(11, 20, 1e-3)).toBeCloseTo(5e-4, 15);
    // s = 20 (one past the end): p = 1 → 0
    expect(cosineWithWarmup(20, 20, 1e-3)).toBeCloseTo(0, 15);
  });
});

describe('data order', () => {
  it('is a seeded permutation, different per epoch, identical on replay', () => {
    const a = epochOrder(100, 7, 0);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(100).keys()]);
    expect(epochOrder(100, 7, 0)).toEqual(a);
    expect(epochOrder(100, 7, 1)).not.toEqual(a);
    expect(epochOrder(100, 8, 0)).not.toEqual(a);
  });

  it('shards a global batch into contiguous near-equal parts', () => {
    const batch = [9, 8, 7, 6, 5];
    expect([0, 1].map((r) => shard(batch, r, 2))).toEqual([
      [9, 8, 7],
      [6, 5],
    ]);
    expect([0, 1, 2].flatMap((r) => shard(batch, r, 3))).toEqual(batch);
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
  });
});

describe('reference cache', () => {
  const scores = (n: number, off: number) => ({
    n,
    hiddenSize: 3,
    sumLogp: Float64Array.from({ length: n }, (_, i) => -(i + off) * 1.5),
    tokens: Int32Array.from({ length: n }, (_, i) => i + off + 1),
    meanHidden: Float32Array.from({ length: n * 3 }, (_, i) => (i + off) / 7),
  });

  it('concatenates, slices and round-trips through the file byte for byte', async () => {
    const all = concatScores([scores(2, 0), scores(3, 2)]);
    expect(all.n).toBe(5);
    expect([...all.tokens]).toEqual([1, 2, 3, 4, 5]);
    const s = sliceScores(all, [4, 0]);
    expect([...s.sumLogp]).toEqual([all.sumLogp[4], all.sumLogp[0]]);
    expect([...s.meanHidden!]).toEqual([
      ...all.meanHidden!.subarray(12, 15),
      ...all.meanHidden!.subarray(0, 3),
    ]);

    const dir = mkdtempSync(join(tmpdir(), 'mpo-ref-'));
    let computed = 0;
    const compute = async () => {
      computed++;
      return { dominantChosen: all };
    };
    const first = await cachedReference(dir, 'k1', compute);
    const second = await cachedReference(dir, 'k1', compute);
    expect(first.hit).toBe(false);
    expect(second.hit).toBe(true);
    expect(computed).toBe(1);
    const back = second.scores.dominantChosen!;
    expect(back.n).toBe(5);
    expect([...back.sumLogp]).toEqual([...all.sumLogp]);
    expect([...back.tokens]).toEqual([...all.tokens]);
    expect([...back.meanHidden!]).toEqual([...all.meanHidden!]);
    expect(back.lastHidden).toBeUndefined();
  });
});

describe('training config', () => {
  const valid = {
    model: 'models/x',
    data: { format: 'mpo', path: 'data.json' },
    method: 'mpo',
    hyperparameters: { beta: 1.5 },
    output: 'out',
  };

  it('fills defaults and resolves paths against the config folder', () => {
    const c = parseTrainConfig(valid, '/cfg');
    expect(c.model).toBe('/cfg/models/x');
    expect(c.data.path).toBe('/cfg/data.json');
    expect(c.output).toBe('/cfg/out');
    expect(c.training.batchSize).toBe(8);
    expect(c.training.warmupRatio).toBe(0.1);
    expect(c.data.split).toBe('train');
  });

  it('lists every problem with its path', () => {
    const raw = {
      model: 3,
      data: { format: 'csv', heldOut: 2 },
      method: 'mpo',
      hyperparameters: { beta: -1, pooling: 'max' },
      training: { batchSize: 2, microBatchSize: 4, learningRate: 'fast', bogus: 1 },
      device: 'tpu',
      extra: true,
    };
    let err: ConfigError | undefined;
    try {
      parseTrainConfig(raw);
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = err!.problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'extra',
        'model',
        'data.format',
        'data.path',
        'data.heldOut',
        'hyperparameters.beta',
        'hyperparameters.pooling',
        'training.learningRate',
        'training.bogus',
        'training.microBatchSize',
        'output',
        'device',
      ]),
    );
  });

  it('rejects an unknown method', () => {
    expect(() => parseTrainConfig({ ...valid, method: 'ppo' })).toThrow(/method: must be one of mpo/);
  });
});

describe('rank agreement check', () => {
  // An in-process stand-in for two ranks: the "other" rank contributes `otherHash`.
  const pairComm = (otherHash: string) => ({
    rank: 0,
    worldSize: 2,
    async allReduceSum(buf: Float32Array) {
      for (let i = 0; i < buf.length; i++) buf[i]! += Number.parseInt(otherHash.slice(i * 4, i * 4 + 4), 16);
    },
  });
  const h = 'ab'.repeat(32);

  it('passes when every rank holds the same weights and names the step when one differs', async () => {
    await expect(assertRanksAgree(pairComm(h), h, 7)).resolves.toBeUndefined();
    const other = `ac${h.slice(2)}`;
    await expect(assertRanksAgree(pairComm(other), h, 7)).rejects.toThrow(
      /weights differ across ranks at step 7/,
    );
  });
});
