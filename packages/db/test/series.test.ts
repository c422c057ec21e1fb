import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db, type MetricInput, SKETCH_CAP } from '../src/index.js';
import { DATABASE_URL, query } from './helpers.js';

let db: Db;
let runId: string;
let trialA: string;
let trialB: string;
// Reference copy of what was written, per series key.
const written = new Map<string, Array<{ step: number; value: number }>>();
const key = (trialId: string, name: string, language: string | null) => `${trialId}/${name}/${language}`;

beforeAll(async () => {
  db = createDb(DATABASE_URL);
  const { run } = await db.runs.create({
    name: `series-${randomUUID().slice(0, 8)}`,
    spec: {},
    trials: [{ hyperparameters: {} }, { hyperparameters: {} }],
  });
  runId = run.id;
  trialA = run.trials[0]!.id;
  trialB = run.trials[1]!.id;
  const rows: MetricInput[] = [];
  const add = (trialId: string, name: string, language: string | null, step: number, value: number) => {
    rows.push({ trialId, name, language, step, value });
    const k = key(trialId, name, language);
    written.set(k, [...(written.get(k) ?? []), { step, value }]);
  };
  // Dense loss on A (steps 1..5000), sparse per-language reward gap on A (every 7th step from 3),
  // a short loss on B (steps 10..40) so some requests ask for more points than exist.
  for (let s = 1; s <= 5000; s++) add(trialA, 'loss', null, s, Math.sin(s / 50) + s / 5000);
  for (let s = 3; s <= 4000; s += 7) {
    add(trialA, 'rg', 'zh', s, s / 100);
    add(trialA, 'rg', 'ko', s, -s / 100);
  }
  for (let s = 10; s <= 40; s++) add(trialB, 'loss', null, s, 1 / s);
  // Appended in two halves, the second re-sending a slice of the first: the catalog counts rows once.
  await db.metrics.append(rows.slice(0, 4000));
  await db.metrics.append(rows.slice(3000));
  // The reference works on the values as stored (the Prisma write path may round the last digit of a double).
  for (const k of written.keys()) {
    const [trialId, name, lang] = k.split('/') as [string, string, string];
    const language = lang === 'null' ? null : lang;
    const stored = await db.metrics.series(trialId, name, { language });
    written.set(
      k,
      stored.map((p) => ({ step: p.step, value: p.value })),
    );
  }
});
afterAll(async () => {
  await db.runs.delete(runId);
  await db.close();
});

/** Number of floor(step / t) buckets among ascending points. */
const bucketCount = (pts: { step: number }[], t: number) =>
  new Set(pts.map((p) => Math.floor(p.step / t))).size;

/**
 * The same answer computed in JS from every stored row: the rows themselves when (since, last] spans at most
 * `points` steps; otherwise the last row of each floor(step / t) bucket, t the smallest power of two ≥ the
 * sketch stride (smallest power of two with ≤ SKETCH_CAP buckets over the whole series) leaving ≤ points buckets.
 */
export function reference(points: { step: number; value: number }[], n: number, since = -1) {
  const all = [...points].sort((a, b) => a.step - b.step);
  const rows = all.filter((p) => p.step > since);
  const lo = Math.max(all[0]!.step, since + 1);
  const hi = all.at(-1)!.step;
  if (hi < lo) return { stride: 1, steps: [], values: [] };
  if (hi - lo + 1 <= n)
    return { stride: 1, steps: rows.map((p) => p.step), values: rows.map((p) => p.value) };
  let t = 1;
  while (bucketCount(all, t) > SKETCH_CAP) t *= 2;
  while (bucketCount(rows, t) > n) t *= 2;
  const last = new Map<number, { step: number; value: number }>();
  for (const p of rows) last.set(Math.floor(p.step / t), p);
  const kept = [...last.values()];
  return { stride: t, steps: kept.map((p) => p.step), values: kept.map((p) => p.value) };
}

describe('metric series catalog', () => {
  it('tracks each series range and row count through the trigger, duplicates not counted', async () => {
    const series = await db.series.list({ runId });
    expect(
      series.map((s) => [
        s.trialId === trialA ? 'A' : 'B',
        s.name,
        s.language,
        s.firstStep,
        s.lastStep,
        s.count,
      ]),
    ).toEqual([
      ['A', 'loss', null, 1, 5000, 5000],
      ['A', 'rg', 'ko', 3, 4000, 572],
      ['A', 'rg', 'zh', 3, 4000, 572],
      ['B', 'loss', null, 10, 40, 31],
    ]);
    const [{ n }] = await query<{ n: string }>(
      DATABASE_URL,
      `SELECT count(*) AS n FROM "Metric" m JOIN "Trial" t ON t.id = m."trialId" WHERE t."runId" = $1`,
      [runId],
    );
    expect(Number(n)).toBe(5000 + 572 * 2 + 31);
  });
});

describe('downsampling', () => {
  it('matches the JS reference for every series and point count', async () => {
    for (const points of [1, 2, 7, 100, 500, 1000, SKETCH_CAP]) {
      const got = await db.series.downsample({ runId, points });
      expect(got).toHaveLength(4);
      for (const s of got) {
        const ref = reference(written.get(key(s.trialId, s.name, s.language))!, points);
        const k = key(s.trialId, s.name, s.language);
        expect({ points, k, stride: s.stride, steps: s.steps, values: s.values }).toEqual({
          points,
          k,
          ...ref,
        });
        expect(s.steps.length).toBeLessThanOrEqual(points);
      }
    }
  });

  it('returns every point when there are fewer than asked for, and always the last step', async () => {
    const [b] = await db.series.downsample({ runId, trialId: trialB, points: 500 });
    expect(b!.steps).toEqual(Array.from({ length: 31 }, (_, i) => i + 10));
    // 5,000 steps into at most 10 points: buckets of 512 steps (the last has the series' last step).
    const [a] = await db.series.downsample({ runId, trialId: trialA, name: 'loss', points: 10 });
    expect(a!.stride).toBe(512);
    expect(a!.steps).toEqual([511, 1023, 1535, 2047, 2559, 3071, 3583, 4095, 4607, 5000]);
    // Polling for what is new: a short tail comes back row by row.
    const [tail] = await db.series.downsample({
      runId,
      trialId: trialA,
      name: 'loss',
      points: 500,
      sinceStep: 4990,
    });
    expect(tail!.steps).toEqual([4991, 4992, 4993, 4994, 4995, 4996, 4997, 4998, 4999, 5000]);
  });

  it('filters by trial, name, language and since', async () => {
    const zh = await db.series.downsample({ runId, name: 'rg', language: 'zh', points: 50, sinceStep: 2000 });
    expect(zh.map((s) => [s.name, s.language])).toEqual([['rg', 'zh']]);
    expect(zh[0]!.steps[0]).toBeGreaterThan(2000);
    expect(zh[0]).toMatchObject(reference(written.get(key(trialA, 'rg', 'zh'))!, 50, 2000));
    const after = await db.series.downsample({
      runId,
      trialId: trialA,
      name: 'loss',
      points: 50,
      sinceStep: 5000,
    });
    expect(after[0]!.steps).toEqual([]);
    expect(await db.series.downsample({ runId: randomUUID(), points: 10 })).toEqual([]);
    await expect(db.series.downsample({ runId, points: SKETCH_CAP + 1 })).rejects.toThrow(RangeError);
  });

  it('keeps the sketch exact under concurrent, interleaved and out-of-order writers', async () => {
    const { run } = await db.runs.create({
      name: 'sketch-race',
      spec: {},
      trials: [{ hyperparameters: {} }],
    });
    const trialId = run.trials[0]!.id;
    // 20,000 steps written by four writers at once, each taking every fourth step, in shuffled batches.
    const writers = [0, 1, 2, 3].map((w) => {
      const rows: MetricInput[] = [];
      for (let s = 1 + w; s <= 20_000; s += 4)
        rows.push({ trialId, step: s, name: 'loss', value: Math.cos(s) });
      return rows.reverse();
    });
    await Promise.all(
      writers.map(async (rows) => {
        for (let i = 0; i < rows.length; i += 700) await db.metrics.append(rows.slice(i, i + 700));
      }),
    );
    const stored = await db.metrics.series(trialId, 'loss');
    const [info] = await db.series.list({ runId: run.id });
    expect(info).toMatchObject({ firstStep: 1, lastStep: 20_000, count: 20_000 });
    for (const points of [50, 500, SKETCH_CAP]) {
      const [got] = await db.series.downsample({ runId: run.id, points });
      expect({ stride: got!.stride, steps: got!.steps, values: got!.values }).toEqual(
        reference(stored, points),
      );
    }
    await db.runs.delete(run.id);
  });
});
