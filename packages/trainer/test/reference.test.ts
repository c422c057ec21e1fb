// reference.ts: reference scores, concatenated, sliced and cached on disk.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedReference, concatScores, sliceScores } from '../src/reference.js';

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
