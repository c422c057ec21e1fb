import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMpoJson, splitByGroup } from '@mpo/data';
import { HfTokenizer, Model } from '@mpo/engine';
import { BUILTIN_MODELS, chatEncoders, resolveBuiltinBenchmark, resolveBuiltinData } from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { loadMultiJail } from '../src/benchmarks.js';
import { createRefusalDetector } from '../src/detector.js';
import { type EvalResult, parseEvalConfig, runEvaluation } from '../src/run-eval.js';
import {
  buildLexicon,
  delexify,
  isLetterWord,
  joinWords,
  relexify,
  SISTER_LANGUAGES,
  wordsOf,
} from '../src/transfer-lexicon.js';
import {
  englishStepData,
  measureTransfer,
  readTestbedFiles,
  testbedFilesFor,
  transferSteps,
} from '../src/transfer-measure.js';
import {
  alignSisterRows,
  buildTransferTestbed,
  transferCorpus,
  writeTransferFiles,
} from '../src/transfer-testbed.js';
import { ALPACA_HELDOUT, alpacaHeldOut, alpacaPrompt } from '../src/utility.js';

describe('sister-language relexification', () => {
  const lex = buildLexicon(['the', 'cat', 'sat', 'on', 'mat'], 3);

  it('maps every vocabulary word to its own word in its own script, and back', () => {
    for (const lang of SISTER_LANGUAGES) {
      const x = relexify(lex, 'The cat sat on the mat.', lang.code);
      const words = x.split(' ');
      expect(words).toHaveLength(7); // six words and the full stop
      expect(words[0]).toBe(words[4]); // "the" twice, the same form
      for (const w of words.slice(0, 6))
        for (const ch of w) {
          const cp = ch.codePointAt(0)!;
          expect(cp >= lang.script[0] && cp <= lang.script[1], `${w} in ${lang.code}`).toBe(true);
        }
      expect(delexify(lex, x)).toBe('the cat sat on the mat.');
    }
  });

  it('reads refusals back as the refusal detector expects them', () => {
    const l = buildLexicon(['i', 'can', 't', 'help'], 1);
    expect(delexify(l, relexify(l, 'I can’t help.', 'qab'))).toBe('i can’t help.');
  });

  it('keeps words outside the vocabulary as they are (the tokenizer reads them as [UNK])', () => {
    expect(relexify(lex, 'the dog', 'qaa').split(' ')[1]).toBe('dog');
  });

  it('is fixed by its seed', () => {
    expect(buildLexicon(['a', 'b'], 3).forward).toEqual(buildLexicon(['a', 'b'], 3).forward);
    expect(buildLexicon(['a', 'b'], 3).forward).not.toEqual(buildLexicon(['a', 'b'], 4).forward);
  });
});

describe('testbed corpus (builtin:tiny-multilingual-transfer)', () => {
  const corpus = transferCorpus(1);
  const dir = mkdtempSync(join(tmpdir(), 'mpo-transfer-files-'));
  writeTransferFiles(dir, corpus);

  it('teaches safety in English, and in a sister language only its resource level’s small share', () => {
    const harmfulEn = corpus.sft.filter((r) => r.lang === 'en' && !r.id.startsWith('alpaca'));
    const refusals = new Set(harmfulEn.map((r) => r.response));
    expect(refusals.size).toBeGreaterThan(10);
    const english = (t: string) => wordsOf(t).join(' ');
    const refusalWords = new Set([...refusals].map(english));
    const englishPrompts = new Set(harmfulEn.map((r) => english(r.prompt)));
    for (const lang of SISTER_LANGUAGES) {
      const refused = corpus.sft.filter(
        (r) => r.lang === lang.code && refusalWords.has(english(delexify(corpus.lexicon, r.response))),
      );
      expect(refused, lang.code).toHaveLength(Math.round(harmfulEn.length * lang.safetyShare));
      // Each is one of the English harmful training prompts, relexified, with its refusal.
      for (const r of refused)
        expect(englishPrompts.has(english(delexify(corpus.lexicon, r.prompt))), r.id).toBe(true);
    }
    // More safety data for higher-resource languages; none for the low-resource one (the paper's Table 1 shape).
    expect(SISTER_LANGUAGES.map((l) => l.safetyShare)).toEqual(
      [...SISTER_LANGUAGES.map((l) => l.safetyShare)].sort((a, b) => b - a),
    );
    expect(SISTER_LANGUAGES.at(-1)!.safetyShare).toBe(0);
    const rows = (lang: string) => corpus.sft.filter((r) => r.lang === lang).length;
    expect(rows('qaa')).toBeGreaterThan(rows('qab'));
    expect(rows('qab')).toBeGreaterThan(rows('qac'));
  });

  it('gives a language the compliant answers of its unsafe share, never for a prompt it is taught to refuse', () => {
    const shares = { safetyShares: [0.2, 0, 0], unsafeShares: [0.5, 0, 0.25] };
    const withUnsafe = transferCorpus(1, 1, shares);
    const unsafe = (lang: string) =>
      withUnsafe.sft.filter((r) => r.lang === lang && r.id.includes(':unsafe:'));
    // The MPO data's training prompt groups (the default split), the only prompts with a compliant answer.
    const mpo = loadMpoJson(resolveBuiltinData('builtin:mpo-llama').path).rows;
    const mpoTrainGroups = new Set(
      splitByGroup(mpo, { heldOutFraction: 0.1, seed: 0 }).train.map((r) => r.group),
    ).size;
    const detector = createRefusalDetector();
    for (const [li, lang] of ['qaa', 'qab', 'qac'].entries()) {
      expect(unsafe(lang), lang).toHaveLength(Math.round(mpoTrainGroups * shares.unsafeShares[li]!));
      for (const r of unsafe(lang))
        expect(detector.detect(delexify(withUnsafe.lexicon, r.response), 'en').refusal, r.id).toBe(false);
    }
    const stem = (id: string) => id.replace(/:(unsafe:)?[a-z]+$/, '');
    const refusedQaa = new Set(
      withUnsafe.sft.filter((r) => r.lang === 'qaa' && !r.id.includes(':unsafe:')).map((r) => stem(r.id)),
    );
    expect(unsafe('qaa').filter((r) => refusedQaa.has(stem(r.id)))).toEqual([]);
    // The rest of the corpus is the recipe's own: the unsafe rows are added, nothing else changes.
    const rest = withUnsafe.sft.filter((r) => !r.id.includes(':unsafe:'));
    expect(rest).toEqual(transferCorpus(1, 1, { ...shares, unsafeShares: [0, 0, 0] }).sft);
  });

  it('draws safety prompts as whole harm categories with --safety-by category', () => {
    const safetyShares = [0.2, 0.05, 0];
    const byCategory = transferCorpus(1, 1, { safetyShares, safetyBy: 'category' });
    const jail = new Map(
      loadMultiJail(resolveBuiltinBenchmark('builtin:multijail'), { languages: ['en'] }).prompts.map((p) => [
        `multijail:${p.id}`,
        p.tags[0],
      ]),
    );
    const taught = (lang: string) =>
      byCategory.sft
        .filter((r) => r.lang === lang && !r.id.startsWith('translate') && !r.id.startsWith('alpaca'))
        .map((r) => r.id.replace(/:[a-z]+$/, ''));
    const qaa = taught('qaa');
    const harmfulEn = byCategory.sft.filter((r) => r.lang === 'en' && !r.id.startsWith('alpaca')).length;
    expect(qaa).toHaveLength(Math.round(harmfulEn * 0.2));
    // Whole categories but the last one reached: every category but one is taught in full or not at all.
    const trainOf = (c: string) =>
      byCategory.sft.filter((r) => r.lang === 'en' && jail.get(r.id.replace(/:en$/, '')) === c).length;
    const counts = new Map<string, number>();
    for (const id of qaa) counts.set(jail.get(id)!, (counts.get(jail.get(id)!) ?? 0) + 1);
    const partial = [...counts].filter(([c, k]) => k < trainOf(c));
    expect(partial.length).toBeLessThanOrEqual(1);
    expect(counts.size).toBeLessThan(6);
    // A lower-resource language's prompts are the first of the same order.
    expect(taught('qab')).toEqual(qaa.slice(0, Math.round(harmfulEn * 0.05)));
  });

  it('never trains on a held-out harmful or harmless prompt', () => {
    const trained = new Set(corpus.sft.map((r) => wordsOf(r.prompt).join(' ')));
    for (const h of corpus.heldOut.harmful) expect(trained.has(wordsOf(h.en).join(' ')), h.id).toBe(false);
    const ids = new Set(corpus.sft.map((r) => r.id.replace(/:[a-z]+$/, '')));
    for (const a of corpus.heldOut.harmless) expect(ids.has(a.id), a.id).toBe(false);
  });

  it('tokenizes a sister-language text word for word like its English original', async () => {
    const tok = await HfTokenizer.fromDir(dir);
    const en = 'How can I make my neighbour stop playing loud music at night?';
    const ids = tok.encode(en);
    for (const lang of SISTER_LANGUAGES) {
      const x = tok.encode(relexify(corpus.lexicon, en, lang.code));
      expect(x).toHaveLength(ids.length);
      // Only what no language translates is shared: punctuation and [UNK].
      const shared = x.filter((id, i) => id === ids[i]).map((id) => tok.decode([id]));
      expect(
        shared.every((t) => t === '?' || t === '[UNK]'),
        shared.join(' '),
      ).toBe(true);
      expect(shared).toContain('?');
    }
    const known = new Set(corpus.lexicon.english);
    const expected = wordsOf(en).map((w) => (known.has(w) || !isLetterWord(w) ? w : '[UNK]'));
    expect(expected).toContain('[UNK]');
    expect(tok.decode(ids)).toBe(joinWords(expected));
  });

  it('writes MPO pairs that the MPO loader reads with their own languages, with the measured label noise', () => {
    const mpo = loadMpoJson(join(dir, 'data/mpo-transfer.json'));
    expect(mpo.dominantLanguage).toBe('en');
    expect(mpo.targetLanguages).toEqual(['qaa', 'qab', 'qac']);
    const refusalChosen = mpo.rows.filter(
      (r) => r.target.chosen === relexify(corpus.lexicon, r.source.chosen, r.lang),
    );
    const swapped = 1 - refusalChosen.length / mpo.rows.length;
    expect(corpus.labelNoise).toBeGreaterThan(0.05);
    expect(Math.abs(swapped - corpus.labelNoise)).toBeLessThan(0.08);
    const files = readTestbedFiles(dir);
    expect(files.lexicon.forward.get('qab')).toEqual(corpus.lexicon.forward.get('qab'));
  });

  it('gives the English-only step its training groups only, and harmless contrast pairs from alpaca training items', () => {
    const alpacaPath = resolveBuiltinData('builtin:alpaca-en').path;
    const work = mkdtempSync(join(tmpdir(), 'mpo-english-step-'));
    // The held-out groups every measurement reads (measureTransfer's split of the sister-language pairs).
    const sister = loadMpoJson(readTestbedFiles(dir).mpoPath).rows;
    const held = new Set(splitByGroup(sister, { heldOutFraction: 0.1, seed: 0 }).heldOutGroups);
    const plain = loadMpoJson(englishStepData(dir, work, 0, alpacaPath)).rows;
    expect(plain).toHaveLength(90); // 100 English prompt groups, a tenth held out
    expect(plain.filter((r) => held.has(r.group))).toEqual([]);
    expect(new Set(plain.map((r) => r.lang))).toEqual(new Set(['en']));

    const mixed = loadMpoJson(englishStepData(dir, work, 7, alpacaPath)).rows;
    expect(mixed.slice(0, 90).map((r) => r.source)).toEqual(plain.map((r) => r.source));
    const contrast = mixed.slice(90);
    expect(contrast).toHaveLength(7);
    const ask = alpacaPrompt;
    const answers = new Map(alpacaHeldOut(alpacaPath, ALPACA_HELDOUT).train.map((a) => [ask(a), a.output]));
    const heldHarmless = new Set(corpus.heldOut.harmless.map(ask));
    const refusals = new Set(plain.map((r) => r.source.chosen));
    for (const r of contrast) {
      expect(heldHarmless.has(r.source.prompt)).toBe(false);
      expect(r.source.chosen).toBe(answers.get(r.source.prompt)); // the item's own answer is preferred
      expect(refusals.has(r.source.rejected)).toBe(true); // over a refusal of the safety pairs
      expect(r.target).toEqual(r.source);
    }
  });

  it('measures a testbed build with its own lexicon, a model trained from it with the testbed’s', () => {
    const other = mkdtempSync(join(tmpdir(), 'mpo-transfer-files-'));
    writeTransferFiles(other, transferCorpus(2, 0.02));
    const trained = mkdtempSync(join(tmpdir(), 'mpo-transfer-trained-'));
    const qab = (f: ReturnType<typeof testbedFilesFor>) => f.lexicon.forward.get('qab');
    expect(qab(testbedFilesFor(other, dir))).toEqual(readTestbedFiles(other).lexicon.forward.get('qab'));
    expect(qab(testbedFilesFor(other, dir))).not.toEqual(corpus.lexicon.forward.get('qab'));
    expect(qab(testbedFilesFor(trained, dir))).toEqual(corpus.lexicon.forward.get('qab'));
  });
});

describe('transfer testbed build', () => {
  it('rebuilds to the same bytes from the same seed', async () => {
    const build = async () => {
      const out = mkdtempSync(join(tmpdir(), 'mpo-transfer-'));
      const r = await buildTransferTestbed({
        seed: 7,
        out,
        threads: 1,
        scale: 0.02,
        training: { maxSteps: 2, batchSize: 4, microBatchSize: 2 },
      });
      return { hash: r.weightsHash, file: readFileSync(join(out, 'model.safetensors')) };
    };
    const [a, b] = [await build(), await build()];
    expect(a.hash).toBe(b.hash);
    expect(a.file.equals(b.file)).toBe(true);
  }, 600_000);

  it('varies only the training run with initSeed: same lexicon and data files, other weights, recorded', async () => {
    const build = async (initSeed?: number) => {
      const out = mkdtempSync(join(tmpdir(), 'mpo-transfer-init-'));
      const r = await buildTransferTestbed({
        seed: 7,
        ...(initSeed === undefined ? {} : { initSeed }),
        out,
        threads: 1,
        scale: 0.02,
        training: { maxSteps: 1, batchSize: 4, microBatchSize: 4 },
      });
      const meta = JSON.parse(readFileSync(join(out, 'testbed.json'), 'utf8'));
      return { hash: r.weightsHash, meta, out };
    };
    const [plain, same, other] = [await build(), await build(7), await build(8)];
    // initSeed equal to seed is the plain recipe: same weights, nothing extra recorded.
    expect(same.hash).toBe(plain.hash);
    expect(same.meta.initSeed).toBeUndefined();
    expect(other.hash).not.toBe(plain.hash);
    expect(other.meta.initSeed).toBe(8);
    expect(other.meta.rebuild).toContain('--seed 7 --init-seed 8');
    // Every data file (lexicon, tokenizer, corpus, held-out prompts) is byte-identical: only the run differs.
    const dataFiles = Object.keys(plain.meta.files).filter((f) => f !== 'model.safetensors');
    expect(dataFiles.length).toBeGreaterThan(3);
    for (const f of dataFiles) expect(other.meta.files[f], f).toBe(plain.meta.files[f]);
  }, 600_000);
});

describe('the aligned start', () => {
  // A two-tensor float32 safetensors file of `vocab` rows of width 3, rows filled from a counter.
  const tinyCheckpoint = (vocab: number) => {
    const width = 3;
    const bytes = vocab * width * 4;
    const header = JSON.stringify({
      'model.embed_tokens.weight': { dtype: 'F32', shape: [vocab, width], data_offsets: [0, bytes] },
      'lm_head.weight': { dtype: 'F32', shape: [vocab, width], data_offsets: [bytes, 2 * bytes] },
    });
    const data = Float32Array.from({ length: 2 * vocab * width }, (_, i) => ((i * 7) % 11) - 5);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const path = join(mkdtempSync(join(tmpdir(), 'mpo-align-')), 'model.safetensors');
    writeFileSync(path, Buffer.concat([len, Buffer.from(header), Buffer.from(data.buffer)]));
    return { path, width, data, offset: 8 + header.length };
  };

  it('sets each sister word row to a·row_en + √(1−a²)·row_x with the given per-language alignment', () => {
    const lex = buildLexicon(['the', 'cat'], 3);
    const tokens = [
      'the',
      'cat',
      ...SISTER_LANGUAGES.flatMap((l) => ['the', 'cat'].map((w) => lex.forward.get(l.code)!.get(w)!)),
    ];
    const tok = { tokenToId: (t: string) => tokens.indexOf(t) } as unknown as HfTokenizer;
    const ck = tinyCheckpoint(tokens.length);
    alignSisterRows(ck.path, tok, lex, [1, 0, 0.6]);
    const buf = readFileSync(ck.path);
    const after = new Float32Array(buf.buffer.slice(buf.byteOffset + ck.offset, buf.byteOffset + buf.length));
    for (const tensor of [0, 1])
      for (const [li] of SISTER_LANGUAGES.entries())
        for (const [wi] of ['the', 'cat'].entries()) {
          const x = 2 + 2 * li + wi;
          for (let k = 0; k < ck.width; k++) {
            const at = (row: number) => tensor * tokens.length * ck.width + row * ck.width + k;
            // Hand-worked: a = 1 copies the English row, a = 0 keeps the word's own row, a = 0.6 mixes with 0.8.
            const want = [ck.data[at(wi)]!, ck.data[at(x)]!, 0.6 * ck.data[at(wi)]! + 0.8 * ck.data[at(x)]!][
              li
            ]!;
            expect(after[at(x)]).toBeCloseTo(want, 5);
            expect(after[at(wi)]).toBe(ck.data[at(wi)]); // English rows untouched
          }
        }
  });

  it('records recipe overrides in testbed.json and in its rebuild command', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mpo-transfer-overrides-'));
    await buildTransferTestbed({
      seed: 7,
      out,
      threads: 1,
      scale: 0.02,
      safetyShares: [0.5, 0, 0],
      alignments: [0.9, 0.5, 0.1],
      unsafeShares: [0, 0, 0.25],
      epochs: 3,
      training: { maxSteps: 1, batchSize: 4, microBatchSize: 4 },
    });
    const meta = JSON.parse(readFileSync(join(out, 'testbed.json'), 'utf8'));
    expect(meta.languages.map((l: { alignment: number }) => l.alignment)).toEqual([0.9, 0.5, 0.1]);
    expect(meta.languages.map((l: { safetyShare: number }) => l.safetyShare)).toEqual([0.5, 0, 0]);
    expect(meta.languages.map((l: { unsafeShare: number }) => l.unsafeShare)).toEqual([0, 0, 0.25]);
    expect(meta.rebuild).toBe(
      'mpo testbed build --testbed tiny-multilingual-transfer --seed 7 --epochs 3 --scale 0.02 --safety-shares 0.5,0,0 --alignments 0.9,0.5,0.1 --unsafe-shares 0,0,0.25 --threads 1',
    );
    // The share adds that many of the English harmful prompts, with their refusals, to qaa alone.
    const count = (safetyShares: number[], lang: string) =>
      transferCorpus(7, 0.02, { safetyShares }).sft.filter((r) => r.lang === lang).length;
    expect(count([0.5, 0, 0], 'qaa') - count([0, 0, 0], 'qaa')).toBeGreaterThan(0);
    expect(count([0.5, 0, 0], 'qab')).toBe(count([0, 0, 0], 'qab'));
  }, 600_000);
});

/**
 * A language's gaps from their definitions, scored with the engine directly: rg on the held-out groups' English
 * pairs translated (relexified), rgData on the language's own held-out pairs (label noise and all), rgSameChosen
 * with rg's chosen answers after the harmless prompts.
 */
async function gapsByHand(dir: string, lang: string, items: number, maxPairs = Number.POSITIVE_INFINITY) {
  const files = readTestbedFiles(dir);
  const held = splitByGroup(loadMpoJson(files.mpoPath).rows, { heldOutFraction: 0.1, seed: 0 }).heldOut;
  const toLang = (t: string) => (lang === 'en' ? t : relexify(files.lexicon, t, lang));
  const english = [...new Map(held.map((r) => [r.group, r.source])).values()].slice(0, maxPairs);
  const clean = english.map((p) => ({
    prompt: toLang(p.prompt),
    chosen: toLang(p.chosen),
    rejected: toLang(p.rejected),
  }));
  const data = (lang === 'en' ? english : held.filter((r) => r.lang === lang).map((r) => r.target)).slice(
    0,
    maxPairs,
  );
  // Each of the language's own pairs is its English pair translated, or the same with the labels swapped.
  for (const [k, d] of data.entries()) {
    const c = clean[k]!;
    expect([`${c.chosen}|${c.rejected}`, `${c.rejected}|${c.chosen}`]).toContain(`${d.chosen}|${d.rejected}`);
  }
  const tok = await HfTokenizer.fromDir(dir);
  const model = await Model.load(dir, { threads: 1 });
  const enc = chatEncoders(tok, 'llama3');
  const avgLogp = async (prompt: string, response: string) => {
    const p = enc.encodePrompt(prompt, { history: [], lang: '' }).slice(-64);
    const s = await model.score({
      sequences: [[...p, ...enc.encodeResponse(response)].slice(0, 160)],
      promptLengths: [p.length],
    });
    return s.sumLogp[0]! / s.tokens[0]!;
  };
  const gap = async (pairs: typeof clean) => {
    let sum = 0;
    for (const p of pairs) sum += (await avgLogp(p.prompt, p.chosen)) - (await avgLogp(p.prompt, p.rejected));
    return sum / pairs.length;
  };
  let same = 0;
  for (const [k, a] of files.heldOut.harmless.slice(0, items).entries()) {
    const prompt = toLang(alpacaPrompt(a));
    same +=
      (await avgLogp(prompt, clean[k % clean.length]!.chosen)) - (await avgLogp(prompt, toLang(a.output)));
  }
  const gaps = { rg: await gap(clean), rgData: await gap(data), rgSameChosen: same / items, n: clean.length };
  model.dispose();
  return gaps;
}

describe('the reward gaps of mpo testbed measure', () => {
  it('scores rg on the English pairs translated and rgData on the language’s own pairs, labels swapped and all', async () => {
    // The committed checkpoint: its qab held-out pairs include swapped ones, so the two gaps must differ.
    const dir = BUILTIN_MODELS['builtin:tiny-multilingual-transfer']!();
    const files = readTestbedFiles(dir);
    const held = splitByGroup(loadMpoJson(files.mpoPath).rows, { heldOutFraction: 0.1, seed: 0 }).heldOut;
    const swapped = held.filter(
      (r) => r.lang === 'qab' && r.target.chosen === relexify(files.lexicon, r.source.rejected, 'qab'),
    );
    expect(swapped.length).toBeGreaterThan(0);
    const [m] = await measureTransfer(dir, files, {
      items: 2,
      maxNewTokens: 1,
      threads: 1,
      languages: ['qab'],
    });
    const byHand = await gapsByHand(dir, 'qab', 2);
    expect(byHand.rg).toBeCloseTo(m!.rg, 5);
    expect(byHand.rgData).toBeCloseTo(m!.rgData, 5);
    expect(byHand.rgSameChosen).toBeCloseTo(m!.rgSameChosen, 5);
    expect(Math.abs(m!.rg - m!.rgData)).toBeGreaterThan(0.01);
    // The evaluator (mpo eval, the worker, mpo reproduce) scores the same pairs as measure's rg.
    const results: EvalResult[] = [];
    const cfg = parseEvalConfig({
      model: dir,
      benchmarks: ['reward-gap'],
      data: { path: 'builtin:mpo-transfer' },
      languages: ['en', 'qab'],
      maxPrompts: 10,
      cutoff: 160,
      threads: 1,
    });
    await runEvaluation(cfg, (r) => results.push(r));
    const rg = results.find((r) => r.language === 'qab')!;
    expect([rg.n, rg.value]).toEqual([byHand.n, expect.closeTo(m!.rg, 4)]);
  }, 600_000);
});

describe('mpo eval on the transfer testbed', () => {
  it('evaluates sister languages on the testbed’s own held-out prompts, judged in English', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mpo-transfer-eval-'));
    await buildTransferTestbed({
      seed: 3,
      out,
      threads: 1,
      scale: 0.02,
      training: { maxSteps: 1, batchSize: 4, microBatchSize: 4 },
    });
    const before = process.env.MPO_TRANSFER_TESTBED_DIR;
    process.env.MPO_TRANSFER_TESTBED_DIR = out;
    try {
      const results: EvalResult[] = [];
      const answers: { lang: string; prompt: string }[] = [];
      const cfg = parseEvalConfig({
        model: out,
        benchmarks: ['reward-gap', 'multijail', 'utility'],
        data: { path: join(out, 'data/mpo-transfer.json') },
        languages: ['en', 'qac'],
        maxPrompts: 2,
        maxNewTokens: 2,
        utilityItems: 2,
        // measureTransfer cuts prompt + answer at 160 tokens: the same cut, so the two gaps are the same numbers.
        benchmarkCutoff: 160,
        cutoff: 160,
        threads: 1,
      });
      await runEvaluation(cfg, (r) => results.push(r), {
        onGeneration: (g) => answers.push({ lang: g.language, prompt: g.prompt }),
      });
      const asr = results.filter((r) => r.benchmark === 'multijail').map((r) => [r.language, r.n]);
      expect(asr).toEqual([
        ['en', 2],
        ['qac', 2],
        ['avg', 4],
      ]);
      // Utility per language: perplexity, and beside it the harmless reward gap and harmless refusals.
      const util = results.filter((r) => r.benchmark === 'utility');
      expect(util.map((r) => [r.language, r.metric, r.n])).toEqual([
        ['en', 'ppl', 2],
        ['en', 'rg_harmless', 2],
        ['en', 'refused', 2],
        ['qac', 'ppl', 2],
        ['qac', 'rg_harmless', 2],
        ['qac', 'refused', 2],
      ]);
      // The same harmless gap as `mpo testbed measure` computes on the same two items.
      const measured = await measureTransfer(out, readTestbedFiles(out), {
        items: 2,
        maxNewTokens: 2,
        threads: 1,
        languages: ['en', 'qac'],
      });
      for (const m of measured) {
        const byHand = await gapsByHand(out, m.lang, 2);
        expect(byHand.rg).toBeCloseTo(m.rg, 5);
        // The evaluator's reward gap is the paper's, as measure's rg: the English pairs translated (its first 2).
        const rg = results.find((r) => r.benchmark === 'reward-gap' && r.language === m.lang)!;
        const firstTwo = await gapsByHand(out, m.lang, 2, 2);
        expect([rg.n, rg.value]).toEqual([2, expect.closeTo(firstTwo.rg, 4)]);
        expect(byHand.rgData).toBeCloseTo(m.rgData, 5);
        expect(byHand.rgSameChosen).toBeCloseTo(m.rgSameChosen, 5);
        const got = util.find((r) => r.language === m.lang && r.metric === 'rg_harmless')!.value;
        expect(got).toBeCloseTo(m.rgHarmless, 4);
        const refused = util.find((r) => r.language === m.lang && r.metric === 'refused')!.value;
        expect([0, 0.5, 1]).toContain(refused);
      }
      // The held-out harmful prompts, in English and relexified into qac's script.
      const held = readTestbedFiles(out).heldOut.harmful;
      expect(answers[0]!.prompt).toBe(held[0]!.en);
      const qac = answers.find((a) => a.lang === 'qac')!;
      expect(qac.prompt).toMatch(/[\u0561-\u0586]/u);
      expect(qac.prompt).not.toBe(held[0]!.en);
    } finally {
      if (before === undefined) delete process.env.MPO_TRANSFER_TESTBED_DIR;
      else process.env.MPO_TRANSFER_TESTBED_DIR = before;
    }
  }, 600_000);
});

describe('transfer checks', () => {
  it('run a DPO step on English pairs only and one on qac pairs only, each measured on every language', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mpo-transfer-steps-'));
    await buildTransferTestbed({
      seed: 5,
      out,
      threads: 1,
      scale: 0.02,
      training: { maxSteps: 1, batchSize: 4, microBatchSize: 4 },
    });
    const r = await transferSteps(out, {
      items: 2,
      maxNewTokens: 2,
      threads: 1,
      epochs: 1,
      work: join(out, 'steps'),
    });
    const langs = ['en', 'qaa', 'qab', 'qac'];
    expect(r.base.map((m) => m.lang)).toEqual(langs);
    expect(r.steps.map((s) => [s.name, s.trainedOn, s.steps])).toEqual([
      ['english-only', ['en'], 12], // 90 training groups, batch 8
      ['qac-only', ['qac'], 12],
    ]);
    for (const s of r.steps) {
      expect(s.measures.map((m) => m.lang)).toEqual(langs);
      // Trained weights differ from the base, so the reward gaps move.
      expect(s.measures.find((m) => m.lang === s.trainedOn[0])!.rg).not.toBe(
        r.base.find((m) => m.lang === s.trainedOn[0])!.rg,
      );
    }
    // The trained model reads text with the testbed's tokenizer (copied beside its weights).
    expect(readFileSync(join(out, 'steps/qac-only/final/tokenizer.json'), 'utf8')).toBe(
      readFileSync(join(out, 'tokenizer.json'), 'utf8'),
    );
  }, 600_000);
});
