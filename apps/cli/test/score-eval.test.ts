import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { datasetsDir, goldenDir, mpo, tmp } from './helpers.js';

const expected = JSON.parse(readFileSync(join(goldenDir, 'expected.json'), 'utf8'));
const pairs = join(goldenDir, 'pairs.jsonl');

describe('mpo score', () => {
  it('reproduces the golden fixture: every avgLogp and rg within 1e-4, and RG per language', async () => {
    const r = await mpo(['score', '--model', goldenDir, '--data', pairs, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.examples).toHaveLength(expected.examples.length);
    // Progress on stderr (JSON lines off a terminal), ending at every pair scored.
    const last = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    expect(last).toMatchObject({
      type: 'progress',
      phase: 'score',
      done: expected.examples.length,
      total: expected.examples.length,
    });
    type Side = { avgLogp: number; tokens: number };
    out.examples.forEach((e: { id: string; chosen: Side; rejected: Side; rg: number }, i: number) => {
      const want = expected.examples[i];
      expect(e.id).toBe(want.id);
      expect(e.chosen.tokens).toBe(want.chosen.tokens);
      expect(Math.abs(e.chosen.avgLogp - want.chosen.avgLogp)).toBeLessThan(1e-4);
      expect(Math.abs(e.rejected.avgLogp - want.rejected.avgLogp)).toBeLessThan(1e-4);
      expect(Math.abs(e.rg - want.rg)).toBeLessThan(1e-4);
    });
    for (const [lang, rg] of Object.entries(expected.per_language_rg as Record<string, number>)) {
      expect(Math.abs(out.perLanguage[lang].rg - rg)).toBeLessThan(1e-4);
    }
  });

  it("tokenizes MPO JSON with the model's tokenizer and template, per language with the dominant one", async () => {
    const r = await mpo([
      'score',
      '--model',
      goldenDir,
      '--data',
      join(datasetsDir, 'mpo/llama_mpo_data.json'),
      '--template',
      'byte',
      '--cutoff',
      '512',
      '--limit',
      '60',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out.perLanguage).sort()).toEqual(['ar', 'bn', 'en', 'ja', 'ko', 'sw', 'zh']);
    // 60 target pairs plus the English pair of each distinct prompt among them.
    expect(out.examples.filter((e: { lang: string }) => e.lang !== 'en')).toHaveLength(60);
    expect(out.perLanguage.en.n).toBeGreaterThanOrEqual(10);
  });

  it('fails clearly on a bad path, a malformed line and an out-of-vocabulary token', async () => {
    const dir = tmp('score');
    const missing = await mpo(['score', '--model', goldenDir, '--data', join(dir, 'nope.jsonl')]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/nope\.jsonl: no such file/);

    const lines = readFileSync(pairs, 'utf8').trim().split('\n');
    const malformed = join(dir, 'malformed.jsonl');
    writeFileSync(malformed, `${lines[0]}\n${lines[1]}\n{"id": "x", "prompt_ids": [256, 1\n`);
    const bad = await mpo(['score', '--model', goldenDir, '--data', malformed]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/malformed\.jsonl:3/);

    const oov = join(dir, 'oov.jsonl');
    const row = JSON.parse(lines[0]!);
    row.chosen_ids[0] = 320; // vocab_size is 320
    writeFileSync(oov, `${lines[1]}\n${JSON.stringify(row)}\n`);
    const big = await mpo(['score', '--model', goldenDir, '--data', oov]);
    expect(big.code).toBe(3);
    expect(big.stderr).toMatch(/oov\.jsonl:2.*320/);
  });
});

describe('mpo eval', () => {
  it('reports reward gap, MultiJail ASR and utility as result lines', async () => {
    const r = await mpo([
      'eval',
      '--model',
      'builtin:golden-llama',
      '--benchmarks',
      'reward-gap,multijail,utility',
      '--max-prompts',
      '2',
      '--max-new-tokens',
      '4',
      '--languages',
      'en,sw',
      '--json',
    ]);
    expect(r.code).toBe(0);
    // Not on a terminal: progress as JSON lines on stderr, each benchmark from 0 to its total.
    const progress = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(progress.every((p) => p.type === 'progress')).toBe(true);
    for (const phase of ['reward-gap', 'multijail', 'utility']) {
      const ps = progress.filter((p) => p.phase === phase);
      expect(ps[0], phase).toMatchObject({ done: 0 });
      expect(ps.at(-1).done, phase).toBe(ps.at(-1).total);
      expect(ps.at(-1).total, phase).toBeGreaterThan(0);
    }
    // MultiJail: 2 prompts in each of 2 languages.
    expect(progress.filter((p) => p.phase === 'multijail').at(-1).total).toBe(4);
    const results = r.lines.filter((l) => l.type === 'result');
    const key = (l: Record<string, unknown>) => `${l.benchmark}/${l.language}/${l.metric}`;
    expect(results.map(key)).toEqual(
      expect.arrayContaining([
        'reward-gap/en/rg',
        'reward-gap/zh/rg',
        'multijail/en/asr',
        'multijail/sw/asr',
        'multijail/avg/asr',
        'utility/en/ppl',
        'utility/zh/ppl',
      ]),
    );
    for (const l of results) {
      expect(Number.isFinite(l.value), key(l)).toBe(true);
      expect(l.n as number).toBeGreaterThan(0);
    }
    const asr = results.find((l) => key(l) === 'multijail/en/asr')!;
    expect(asr.value as number).toBeGreaterThanOrEqual(0);
    expect(asr.value as number).toBeLessThanOrEqual(1);
    expect(r.lines.at(-1)).toEqual({ type: 'done', results: results.length });
  });

  it('--save-responses keeps every generation with its language, prompt, benchmark and verdict', async () => {
    const file = join(tmp('gen'), 'generations.jsonl');
    const r = await mpo([
      'eval',
      '--model',
      'builtin:golden-llama',
      '--benchmarks',
      'multijail',
      '--max-prompts',
      '2',
      '--max-new-tokens',
      '4',
      '--languages',
      'en,sw',
      '--save-responses',
      file,
      '--json',
    ]);
    expect(r.code).toBe(0);
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    expect(lines.map((l) => l.language)).toEqual(['en', 'en', 'sw', 'sw']);
    for (const l of lines) {
      expect(l).toMatchObject({ benchmark: 'multijail', judge: 'builtin:refusal-detector' });
      expect(typeof l.prompt).toBe('string');
      expect(l.prompt.length).toBeGreaterThan(0);
      expect(typeof l.response).toBe('string');
      expect(['safe', 'unsafe', 'irrelevant']).toContain(l.verdict);
    }
    // The same prompt (benchmark row id) in both languages.
    expect(lines[0].promptId).toBe(lines[2].promptId);
    // The ASR the result line reports is the share of unsafe + irrelevant verdicts in the file.
    for (const lang of ['en', 'sw']) {
      const asr = r.lines.find((l) => l.type === 'result' && l.language === lang && l.metric === 'asr')!;
      const mine = lines.filter((l) => l.language === lang);
      expect(asr.value).toBeCloseTo(mine.filter((l) => l.verdict !== 'safe').length / mine.length, 12);
    }
  });

  it('lists config problems', async () => {
    const r = await mpo([
      'eval',
      '--model',
      'builtin:golden-llama',
      '--benchmarks',
      'mmlu',
      '--max-prompts',
      '0',
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/benchmarks: /);
    expect(r.stderr).toMatch(/maxPrompts: /);
  });

  it('csrt: says where to get the file when no path is given, and evaluates a CSRT-format file', async () => {
    const noPath = await mpo(['eval', '--model', 'builtin:golden-llama', '--benchmarks', 'csrt'], {
      env: { MPO_CSRT_PATH: '' },
    });
    expect(noPath.code).toBe(3);
    expect(noPath.stderr).toMatch(/csrt\.path: required .*github\.com\/haneul-yoo\/csrt @ 574574a/);
    expect(noPath.stderr).toMatch(/--csrt PATH, csrt\.path, or MPO_CSRT_PATH/);
    const gone = await mpo([
      'eval',
      '--model',
      'builtin:golden-llama',
      '--benchmarks',
      'csrt',
      '--csrt',
      '/nope.csv',
    ]);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/\/nope\.csv does not exist/);

    const { writeCsrtSample } = await import('@mpo/eval');
    const csv = writeCsrtSample(join(tmp('csrt'), 'csrt.csv'), 3);
    const args = ['eval', '--model', 'builtin:golden-llama', '--benchmarks', 'csrt', '--max-new-tokens', '4'];
    // The flag and the environment variable name the same file.
    for (const r of [
      await mpo([...args, '--csrt', csv, '--json']),
      await mpo([...args, '--json'], { env: { MPO_CSRT_PATH: csv } }),
    ]) {
      expect(r.code, r.stderr).toBe(0);
      const res = r.lines.filter((l) => l.type === 'result');
      expect(res).toEqual([
        expect.objectContaining({ benchmark: 'csrt', language: 'csrt', metric: 'asr', n: 3 }),
      ]);
    }
  });
});
