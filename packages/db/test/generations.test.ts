// Generations behind attack-success rates, against the real Postgres.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db, InvalidInputError, type NewGeneration, NotFoundError } from '../src/index.js';
import { DATABASE_URL, query } from './helpers.js';

let db: Db;
beforeAll(() => {
  db = createDb(DATABASE_URL);
});
afterAll(async () => db.close());

const newTrial = async () => {
  const { run } = await db.runs.create({
    name: `gen-${randomUUID().slice(0, 8)}`,
    spec: { method: 'mpo', search: { strategy: 'grid' } },
    trials: [{ hyperparameters: {} }, { hyperparameters: {} }],
  });
  return { runId: run.id, trialId: run.trials[0]!.id, otherTrialId: run.trials[1]!.id };
};

const gen = (language: string, promptId: string, verdict: NewGeneration['verdict']): NewGeneration => ({
  benchmark: 'multijail',
  language,
  promptId,
  prompt: `prompt ${promptId} (${language})`,
  response: `response ${promptId}`,
  verdict,
  reason: verdict === 'safe' ? 'refusal phrase "I cannot" (en)' : 'no refusal phrase',
  judge: 'builtin:refusal-detector',
});

const rows = [
  gen('zh', '2', 'unsafe'),
  gen('en', '1', 'safe'),
  gen('zh', '1', 'safe'),
  gen('sw', '1', 'irrelevant'),
  gen('en', '2', 'unsafe'),
  gen('sw', '2', 'unsafe'),
];

describe('generations', () => {
  it("stores one evaluation's rows linked to run, trial and the ASR evaluation; a retry replaces them", async () => {
    const { runId, trialId } = await newTrial();
    await db.artifacts.recordEvaluations([
      { trialId, benchmark: 'multijail', language: 'zh', metric: 'asr', value: 0.5, n: 2 },
    ]);
    expect(await db.generations.replace({ trialId }, rows)).toBe(6);
    // An eval job retried after a crash writes again: the rows are replaced, not doubled.
    expect(await db.generations.replace({ trialId }, rows)).toBe(6);
    expect(await db.generations.count({ trialId })).toBe(6);
    const zh = await db.generations.list({ runId, language: 'zh' });
    expect(zh.items.map((g) => [g.promptId, g.verdict])).toEqual([
      ['1', 'safe'],
      ['2', 'unsafe'],
    ]);
    const asr = await db.artifacts.evaluations({ trialId });
    expect(zh.items.every((g) => g.evaluationId === asr[0]!.id && g.runId === runId)).toBe(true);
    const en = await db.generations.list({ trialId, language: 'en' });
    expect(en.items.every((g) => g.evaluationId === null)).toBe(true);
    expect(zh.items[0]).toMatchObject({
      prompt: 'prompt 1 (zh)',
      response: 'response 1',
      judge: 'builtin:refusal-detector',
      reason: 'refusal phrase "I cannot" (en)',
      checkpointId: null,
    });
  });

  it('filters by verdict and attack success, counts per language, and pages in a stable order', async () => {
    const { runId, trialId, otherTrialId } = await newTrial();
    await db.generations.replace({ trialId }, rows);
    await db.generations.replace({ trialId: otherTrialId }, [gen('en', '9', 'unsafe')]);
    const success = await db.generations.list({ runId, trialId, attackSuccess: true });
    expect(success.items.map((g) => `${g.language}/${g.promptId}`)).toEqual(['en/2', 'sw/1', 'sw/2', 'zh/2']);
    const irrelevant = await db.generations.list({ runId, verdict: ['irrelevant'] });
    expect(irrelevant.items.map((g) => g.language)).toEqual(['sw']);
    expect(await db.generations.count({ runId })).toBe(7);
    expect(await db.generations.summary({ trialId })).toEqual([
      { benchmark: 'multijail', language: 'en', verdict: 'safe', count: 1 },
      { benchmark: 'multijail', language: 'en', verdict: 'unsafe', count: 1 },
      { benchmark: 'multijail', language: 'sw', verdict: 'irrelevant', count: 1 },
      { benchmark: 'multijail', language: 'sw', verdict: 'unsafe', count: 1 },
      { benchmark: 'multijail', language: 'zh', verdict: 'safe', count: 1 },
      { benchmark: 'multijail', language: 'zh', verdict: 'unsafe', count: 1 },
    ]);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await db.generations.list({ trialId }, { limit: 4, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((g) => `${g.language}/${g.promptId}`));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(['en/1', 'en/2', 'sw/1', 'sw/2', 'zh/1', 'zh/2']);
  });

  it('rejects bad input before writing, naming the field', async () => {
    const { trialId } = await newTrial();
    await db.generations.replace({ trialId }, rows);
    const bad = { ...gen('zh', '3', 'unsafe'), verdict: 'maybe' } as unknown as NewGeneration;
    await expect(db.generations.replace({ trialId }, [gen('zh', '4', 'safe'), bad])).rejects.toThrow(
      /generations\[1\]\.verdict: must be one of safe, unsafe, irrelevant/,
    );
    expect(await db.generations.count({ trialId })).toBe(6);
    await expect(db.generations.replace({ trialId: randomUUID() }, rows)).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(db.generations.list({})).rejects.toBeInstanceOf(InvalidInputError);
    await expect(db.generations.list({ trialId }, { limit: 0 })).rejects.toThrow(/limit/);
    await expect(db.generations.list({ trialId, verdict: 'nope' as never })).rejects.toThrow(/verdict/);
    // The table's own check stops a label the repository would have refused.
    await expect(
      query(
        DATABASE_URL,
        `INSERT INTO "Generation" (id, "runId", "trialId", benchmark, language, "promptId", prompt, response, verdict, judge)
         SELECT gen_random_uuid(), "runId", id, 'm', 'zh', '1', 'p', 'r', 'maybe', 'j' FROM "Trial" WHERE id = $1`,
        [trialId],
      ),
    ).rejects.toThrow(/Generation_verdict_check/);
  });

  it('stores a full MultiJail evaluation (315 prompts × 10 languages) in one call', async () => {
    const { trialId } = await newTrial();
    const langs = ['en', 'zh', 'it', 'vi', 'ar', 'ko', 'th', 'bn', 'sw', 'jv'];
    const many = langs.flatMap((l) => Array.from({ length: 315 }, (_, i) => gen(l, String(i), 'unsafe')));
    expect(await db.generations.replace({ trialId }, many)).toBe(3150);
    expect(await db.generations.count({ trialId, language: 'jv' })).toBe(315);
  });

  it('goes with its run', async () => {
    const { runId, trialId } = await newTrial();
    await db.generations.replace({ trialId }, rows);
    await db.runs.delete(runId);
    expect(await query(DATABASE_URL, 'SELECT 1 FROM "Generation" WHERE "runId" = $1', [runId])).toHaveLength(
      0,
    );
  });
});
