// builtin:tiny-multilingual-transfer — a testbed in which cross-lingual transfer exists (docs/testbed.md).
// English and three synthetic sister languages (transfer-lexicon.ts) share one word-level tokenizer; a
// config-S-sized Llama is trained from a seeded random init with SFT on
//   - alpaca instructions → outputs in English and in every sister language (parallel; fewer rows for the
//     low-resource ones),
//   - translation pairs English ↔ sister language (sentences of the same training rows and harmful prompts),
//   - English harmful prompts → refusals (safety taught in English only).
// Nothing teaches the sister languages to refuse: what they do on a harmful prompt comes from what the model
// shares between languages. The build also writes the testbed's data files (MPO-format preference pairs for
// every sister language with the MPO data's target-label noise, and the held-out harmful / harmless prompts)
// beside the checkpoint, so training runs and `mpo testbed measure` read the same split.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadMpoJson, splitByGroup } from '@mpo/data';
import { CONFIG_S, HfTokenizer, type LlamaConfig, Model } from '@mpo/engine';
import {
  chatEncoders,
  resolveBuiltinBenchmark,
  resolveBuiltinData,
  type StepRecord,
  type TrainExample,
  type TrainingParams,
} from '@mpo/trainer';
import { loadMultiJail } from './benchmarks.js';
import { createRefusalDetector } from './detector.js';
import { safetensorsSha256, testbedTraining, trainTestbedSft } from './testbed-train.js';
import {
  buildLexicon,
  isLetterWord,
  type Lexicon,
  relexify,
  SISTER_LANGUAGES,
  WORD_PATTERN,
  wordsOf,
} from './transfer-lexicon.js';
import { ALPACA_HELDOUT, type AlpacaItem, alpacaHeldOut, alpacaPrompt, heldOutSplit } from './utility.js';

export const TRANSFER_TESTBED_ID = 'builtin:tiny-multilingual-transfer';
/** English letter-words that get a translation (the rest read as [UNK] in every language). */
export const TRANSFER_VOCAB_WORDS = 2400;
const SPECIALS = [
  '[PAD]',
  '[UNK]',
  '<|begin_of_text|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
];
/** MultiJail English prompts held out of training: the held-out harmful prompts of every measurement. */
export const MULTIJAIL_HELDOUT = { seed: 'transfer-multijail-v1', size: 100 } as const;

export interface TransferTestbedOptions {
  /** Seeds the recipe's draws: the lexicon, the data and its splits, the label noise. */
  seed: number;
  /**
   * Seeds the model's random init and the training order; defaults to `seed`. Set apart from it, it varies
   * only the training run over the same languages and data (how much of a property is the run's noise).
   */
  initSeed?: number;
  out: string;
  threads?: number;
  epochs?: number;
  /** Tokens per training sequence (prompt + response). */
  cutoff?: number;
  /** Scale every row count (1 = the recipe); for quick prototypes and tests. */
  scale?: number;
  /** Per sister language, overrides its safetyShare (prototypes of the recipe; the recipe is the lexicon's). */
  safetyShares?: readonly number[];
  /** Per sister language, overrides its alignment (the init cosine to English); same use as safetyShares. */
  alignments?: readonly number[];
  /** Per sister language, overrides its unsafeShare; same use as safetyShares. */
  unsafeShares?: readonly number[];
  /** How the safety prompts are drawn (CorpusShares.safetyBy); default `prompt`. */
  safetyBy?: SafetyDraw;
  training?: Partial<TrainingParams>;
  onStep?(r: StepRecord): void;
}

interface SftRow {
  id: string;
  lang: string;
  prompt: string;
  response: string;
}

export interface TransferCorpus {
  lexicon: Lexicon;
  tokenizerJson: Record<string, unknown>;
  sft: SftRow[];
  /** MPO-format rows (one per training or held-out prompt group and sister language), with `target_lang`. */
  mpoRows: Record<string, unknown>[];
  /** The same prompt groups' English pairs as target-language rows (`target_lang` en): English-only steps. */
  englishRows: Record<string, unknown>[];
  /** Share of sister-language pairs whose chosen/rejected are swapped, as measured on the MPO data. */
  labelNoise: number;
  heldOut: { harmful: { id: string; en: string }[]; harmless: AlpacaItem[] };
  counts: Record<string, number>;
}

const turn = (value: string, from: 'human' | 'gpt') => ({ from, value });

/**
 * Every word of the harmful prompts and refusals (so no harmful prompt reads as a row of [UNK]s), then the
 * most frequent words of the general texts up to `size`; ranked by frequency (short forms for frequent words).
 */
function englishVocabulary(harmful: readonly string[], general: readonly string[], size: number): string[] {
  const counts = new Map<string, number>();
  const count = (texts: readonly string[]) => {
    const seen = new Set<string>();
    for (const t of texts)
      for (const w of wordsOf(t))
        if (isLetterWord(w)) {
          counts.set(w, (counts.get(w) ?? 0) + 1);
          seen.add(w);
        }
    return seen;
  };
  const mustHave = count(harmful);
  count(general);
  // The chat template's role names and the translation instructions must be words of the vocabulary.
  const forced = [
    'user',
    'assistant',
    'translate',
    'into',
    'english',
    ...SISTER_LANGUAGES.map((l) => l.code),
  ];
  const byFrequency = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w);
  const chosen = new Set([...forced, ...mustHave]);
  for (const w of byFrequency) if (chosen.size < size) chosen.add(w);
  return [...forced, ...byFrequency.filter((w) => chosen.has(w) && !forced.includes(w))];
}

/** A WordPiece tokenizer.json whose words are whole tokens: English, the sister languages, digits, punctuation. */
function tokenizerJson(lex: Lexicon, symbols: readonly string[]): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  for (const s of SPECIALS) add(s);
  for (const s of symbols) add(s);
  for (const w of lex.english) add(w);
  for (const fw of lex.forward.values()) for (const w of fw.values()) add(w);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Split', pattern: { Regex: WORD_PATTERN }, behavior: 'Isolated', invert: true },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

/** Sentences of at most `maxWords` words, for translation pairs. */
function sentences(text: string, maxWords = 24): string[] {
  const out: string[] = [];
  for (const s of text.split(/(?<=[.!?])\s+|\n+/)) {
    const w = wordsOf(s);
    for (let i = 0; i < w.length; i += maxWords)
      if (w.length - i >= 3) out.push(w.slice(i, i + maxWords).join(' '));
  }
  return out;
}

function seededOrder<T>(items: readonly T[], seed: string): T[] {
  const rank = (i: number) => createHash('sha256').update(`${seed}\n${i}`).digest('hex');
  return items
    .map((it, i) => ({ it, r: rank(i) }))
    .sort((a, b) => (a.r < b.r ? -1 : 1))
    .map((x) => x.it);
}

/** Share of MPO target pairs labelled against safety: chosen complies while rejected refuses. */
function measuredLabelNoise(rows: ReturnType<typeof loadMpoJson>['rows']): number {
  const det = createRefusalDetector();
  let judged = 0;
  let swapped = 0;
  for (const r of rows) {
    const c = det.detect(r.target.chosen, r.lang).refusal;
    const j = det.detect(r.target.rejected, r.lang).refusal;
    if (c === j) continue;
    judged++;
    if (j) swapped++;
  }
  return judged ? swapped / judged : 0;
}

/** Per sister language, the recipe's data shares (safetyShare, unsafeShare), defaults from the lexicon. */
export interface CorpusShares {
  safetyShares?: readonly number[];
  unsafeShares?: readonly number[];
  /**
   * How a language's safety prompts are drawn: `prompt`, a seeded draw over all harmful training prompts;
   * `category`, whole MultiJail harm categories (first tag) in a seeded order of the categories, so a
   * language is taught to refuse some kinds of harm and not others (the MPO prompts, untagged, come last).
   */
  safetyBy?: SafetyDraw;
}

export const SAFETY_DRAWS = ['prompt', 'category'] as const;
export type SafetyDraw = (typeof SAFETY_DRAWS)[number];

/** Harmful prompts grouped by category, categories in a seeded order, then the untagged ones. */
function categoryOrder<T extends { category?: string }>(items: readonly T[], seed: number): T[] {
  const names = [...new Set(items.flatMap((h) => (h.category ? [h.category] : [])))].sort();
  const groups = seededOrder(names, `safety-categories:${seed}`).map((c) =>
    items.filter((h) => h.category === c),
  );
  groups.push(items.filter((h) => !h.category));
  return groups.flatMap((g, i) => seededOrder(g, `safety:${seed}:${i}`));
}

export function transferCorpus(seed: number, scale = 1, shares: CorpusShares = {}): TransferCorpus {
  // Long: the testbed corpus recipe (sources, per-language shares, splits) kept in one place so the seeded draws stay in order.
  const mpo = loadMpoJson(resolveBuiltinData('builtin:mpo-llama').path);
  const alpacaPath = resolveBuiltinData('builtin:alpaca-en').path;
  const alpaca = alpacaHeldOut(alpacaPath, ALPACA_HELDOUT);
  const jail = loadMultiJail(resolveBuiltinBenchmark('builtin:multijail'), {
    languages: ['en'],
  }).prompts;
  const jailSplit = heldOutSplit(jail, (p) => p.id, MULTIJAIL_HELDOUT);
  const split = splitByGroup(mpo.rows, { heldOutFraction: 0.1, seed: 0 });
  const firstOfGroup = (rows: typeof mpo.rows) => [...new Map(rows.map((r) => [r.group, r])).values()];
  const mpoTrain = firstOfGroup(split.train);
  const mpoAll = firstOfGroup(mpo.rows);
  const safetyShares = shares.safetyShares ?? SISTER_LANGUAGES.map((l) => l.safetyShare);
  const unsafeShares = shares.unsafeShares ?? SISTER_LANGUAGES.map((l) => l.unsafeShare);

  const english = englishVocabulary(
    [...jail.map((p) => p.prompt), ...mpoAll.flatMap((r) => [r.source.prompt, r.source.chosen])],
    [
      ...alpaca.train.flatMap((a) => [a.instruction, a.input, a.output]),
      ...mpoAll.map((r) => r.source.rejected),
    ],
    TRANSFER_VOCAB_WORDS,
  );
  const lexicon = buildLexicon(english, seed);
  const symbolCounts = new Map<string, number>();
  for (const a of alpaca.train)
    for (const w of wordsOf(a.output))
      if (!isLetterWord(w)) symbolCounts.set(w, (symbolCounts.get(w) ?? 0) + 1);
  const symbols = [...symbolCounts]
    .filter(([, c]) => c >= 3)
    .map(([w]) => w)
    .sort();

  const n = (k: number) => Math.max(1, Math.round(k * scale));
  const sft: SftRow[] = [];
  const ask = alpacaPrompt;
  const general = seededOrder(alpaca.train, `alpaca:${seed}`).slice(0, n(alpaca.train.length));
  for (const a of general) sft.push({ id: `${a.id}:en`, lang: 'en', prompt: ask(a), response: a.output });
  const refusals = [...new Set(mpoAll.map((r) => r.source.chosen))].sort();
  const harmfulTrain: { id: string; prompt: string; refusal: string; category?: string }[] = [
    ...mpoTrain.map((r) => ({ id: r.id, prompt: r.source.prompt, refusal: r.source.chosen })),
    ...jailSplit.train.map((p, i) => ({
      id: `multijail:${p.id}`,
      prompt: p.prompt,
      refusal: refusals[i % refusals.length]!,
      category: p.tags[0],
    })),
  ];
  for (const h of harmfulTrain)
    sft.push({ id: `${h.id}:en`, lang: 'en', prompt: h.prompt, response: h.refusal });
  const pool = [
    ...general.flatMap((a) => sentences(`${ask(a)}\n${a.output}`)),
    ...harmfulTrain.flatMap((h) => sentences(h.prompt)),
  ];
  // The same order for every language, so a lower-resource language's safety prompts are a subset.
  const safetyOrder =
    shares.safetyBy === 'category'
      ? categoryOrder(harmfulTrain, seed)
      : seededOrder(harmfulTrain, `safety:${seed}`);
  // Compliant answers exist for the MPO groups only (their rejected side); one seeded order, a prompt a
  // language is taught to refuse never also answered in it.
  const unsafeOrder = seededOrder(
    mpoTrain.map((r) => ({ id: r.id, prompt: r.source.prompt, answer: r.source.rejected })),
    `unsafe:${seed}`,
  );
  const unsafeRows = (taught: readonly { id: string }[], share: number) => {
    const refused = new Set(taught.map((h) => h.id));
    return unsafeOrder.filter((r) => !refused.has(r.id)).slice(0, Math.round(mpoTrain.length * share));
  };
  SISTER_LANGUAGES.forEach((lang, li) => {
    const x = (t: string) => relexify(lexicon, t, lang.code);
    const taught = safetyOrder.slice(0, Math.round(harmfulTrain.length * safetyShares[li]! * scale));
    for (const h of taught)
      sft.push({ id: `${h.id}:${lang.code}`, lang: lang.code, prompt: x(h.prompt), response: x(h.refusal) });
    for (const r of unsafeRows(taught, unsafeShares[li]! * scale))
      sft.push({
        id: `${r.id}:unsafe:${lang.code}`,
        lang: lang.code,
        prompt: x(r.prompt),
        response: x(r.answer),
      });
    for (const a of general.slice(0, n(Math.round(alpaca.train.length * lang.alpacaShare))))
      sft.push({ id: `${a.id}:${lang.code}`, lang: lang.code, prompt: x(ask(a)), response: x(a.output) });
    seededOrder(pool, `translate:${seed}:${lang.code}`)
      .slice(0, n(lang.translationPairs))
      .forEach((s, i) => {
        const toX = i % 2 === 0;
        sft.push({
          id: `translate:${lang.code}:${i}`,
          lang: lang.code,
          prompt: toX ? `translate into ${lang.code} : ${s}` : `translate into english : ${x(s)}`,
          response: toX ? x(s) : s,
        });
      });
  });

  const labelNoise = measuredLabelNoise(mpo.rows);
  const mpoRows = mpoAll.flatMap((r) =>
    SISTER_LANGUAGES.map((lang) => {
      const x = (t: string) => relexify(lexicon, t, lang.code);
      const rng = createHash('sha256')
        .update(`noise:${seed}:${r.group}:${lang.code}`)
        .digest()
        .readUInt32BE(0);
      const swap = rng / 2 ** 32 < labelNoise;
      const [chosen, rejected] = swap
        ? [r.source.rejected, r.source.chosen]
        : [r.source.chosen, r.source.rejected];
      return {
        source_conversations: [turn(r.source.prompt, 'human')],
        source_chosen: turn(r.source.chosen, 'gpt'),
        source_rejected: turn(r.source.rejected, 'gpt'),
        target_conversations: [turn(x(r.source.prompt), 'human')],
        target_chosen: turn(x(chosen), 'gpt'),
        target_rejected: turn(x(rejected), 'gpt'),
        target_lang: lang.code,
      };
    }),
  );
  const englishRows = mpoAll.map((r) => ({
    source_conversations: [turn(r.source.prompt, 'human')],
    source_chosen: turn(r.source.chosen, 'gpt'),
    source_rejected: turn(r.source.rejected, 'gpt'),
    target_conversations: [turn(r.source.prompt, 'human')],
    target_chosen: turn(r.source.chosen, 'gpt'),
    target_rejected: turn(r.source.rejected, 'gpt'),
    target_lang: 'en',
  }));
  const counts: Record<string, number> = { vocabulary: 0 };
  for (const r of sft) counts[r.lang] = (counts[r.lang] ?? 0) + 1;
  const tokenizer = tokenizerJson(lexicon, symbols);
  counts.vocabulary = Object.keys((tokenizer.model as { vocab: object }).vocab).length;
  return {
    lexicon,
    tokenizerJson: tokenizer,
    sft,
    mpoRows,
    englishRows,
    labelNoise,
    heldOut: {
      harmful: jailSplit.heldOut.map((p) => ({ id: p.id, en: p.prompt })),
      harmless: alpaca.heldOut,
    },
    counts,
  };
}

/** Engine "config S" narrowed to width 192, with the testbed's vocabulary, a 1e-5 norm epsilon and 256 positions. */
export function transferConfig(vocabSize: number): LlamaConfig {
  return {
    ...CONFIG_S,
    vocabSize,
    hiddenSize: 192,
    intermediateSize: 512,
    rmsNormEps: 1e-5,
    maxPositionEmbeddings: 256,
    bosTokenId: 2,
    eosTokenId: 5,
    padTokenId: 0,
  };
}

const TOKENIZER_CONFIG = {
  tokenizer_class: 'PreTrainedTokenizerFast',
  bos_token: '<|begin_of_text|>',
  eos_token: '<|eot_id|>',
  pad_token: '[PAD]',
  unk_token: '[UNK]',
};

/** Writes tokenizer.json, tokenizer_config.json and the data files of a corpus into `dir`. */
export function writeTransferFiles(dir: string, corpus: TransferCorpus): void {
  mkdirSync(join(dir, 'data'), { recursive: true });
  const json = (p: string, x: unknown) => writeFileSync(join(dir, p), `${JSON.stringify(x, null, 1)}\n`);
  json('tokenizer.json', corpus.tokenizerJson);
  json('tokenizer_config.json', TOKENIZER_CONFIG);
  json('data/mpo-transfer.json', corpus.mpoRows);
  json('data/safety-en.json', corpus.englishRows);
  json('data/heldout.json', corpus.heldOut);
  json('data/lexicon.json', {
    english: corpus.lexicon.english,
    ...Object.fromEntries(
      [...corpus.lexicon.forward].map(([l, fw]) => [l, corpus.lexicon.english.map((w) => fw.get(w))]),
    ),
  });
}

/**
 * Starts each sister-language word's rows of the input embedding and the output head at cosine `alignment`
 * to its English word's rows (same norm): row_x ← a·row_en + √(1−a²)·row_x, both rows drawn independently
 * at init. Edits the float32 safetensors file of a freshly initialised model in place.
 */
export function alignSisterRows(
  path: string,
  tok: HfTokenizer,
  lex: Lexicon,
  alignments: readonly number[] = SISTER_LANGUAGES.map((l) => l.alignment),
): void {
  const buf = readFileSync(path);
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLength;
  for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) {
    const t = header[name];
    if (t?.dtype !== 'F32') throw new Error(`${path}: ${name} must be a float32 tensor`);
    const [, width] = t.shape as [number, number];
    const start = base + t.data_offsets[0];
    const rows = new Float32Array(
      buf.buffer,
      buf.byteOffset + start,
      (t.data_offsets[1] - t.data_offsets[0]) / 4,
    );
    for (const [li, lang] of SISTER_LANGUAGES.entries()) {
      const a = alignments[li]!;
      const b = Math.sqrt(1 - a * a);
      for (const [en, x] of lex.forward.get(lang.code)!) {
        const e = tok.tokenToId(en);
        const i = tok.tokenToId(x);
        if (e === undefined || i === undefined) throw new Error(`tokenizer lacks ${en} or ${x}`);
        for (let k = 0; k < width; k++)
          rows[i * width + k] = a * rows[e * width + k]! + b * rows[i * width + k]!;
      }
    }
  }
  writeFileSync(path, buf);
}

/** SFT examples, each cut to `cutoff` tokens (the prompt to half of it). */
export function encodeSft(tok: HfTokenizer, rows: readonly SftRow[], cutoff: number): TrainExample[] {
  const enc = chatEncoders(tok, 'llama3');
  return rows.map((r) => {
    const prompt = enc.encodePrompt(r.prompt, { history: [], lang: r.lang });
    const p = prompt.length > cutoff / 2 ? [...prompt.slice(0, cutoff / 2 - 4), ...prompt.slice(-4)] : prompt;
    const response = enc.encodeResponse(r.response).slice(0, cutoff - p.length);
    return { id: r.id, lang: r.lang, target: { prompt: p, chosen: response, rejected: response } };
  });
}

/** Files a build writes beside model.safetensors; testbed.json records their sha256 (`mpo data list --check`). */
const TESTBED_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'data/mpo-transfer.json',
  'data/safety-en.json',
  'data/heldout.json',
  'data/lexicon.json',
];

export const testbedFileHashes = (dir: string): Record<string, string> =>
  Object.fromEntries(
    TESTBED_FILES.map((p) => [
      p,
      createHash('sha256')
        .update(readFileSync(join(dir, p)))
        .digest('hex'),
    ]),
  );

export interface TransferTestbedResult {
  dir: string;
  counts: Record<string, number>;
  weightsHash: string;
  steps: number;
  seconds: number;
  cpuSeconds: number;
}

/**
 * Epochs of the recipe's SFT (960 steps at batch 32). At 2 the sister languages stayed word salad around
 * refusal fragments and an English-only step's reward gap rose as much after harmless prompts (docs/testbed.md).
 */
const TRANSFER_EPOCHS = 4;

/** The `mpo testbed build` line that rebuilds these bytes, naming only what differs from the recipe. */
function rebuildCommand(opts: TransferTestbedOptions, initSeed: number, threads: number): string {
  const flags = [`--seed ${opts.seed}`];
  if (initSeed !== opts.seed) flags.push(`--init-seed ${initSeed}`);
  if (opts.epochs !== undefined && opts.epochs !== TRANSFER_EPOCHS) flags.push(`--epochs ${opts.epochs}`);
  if (opts.scale !== undefined && opts.scale !== 1) flags.push(`--scale ${opts.scale}`);
  if (opts.safetyShares) flags.push(`--safety-shares ${opts.safetyShares.join(',')}`);
  if (opts.alignments) flags.push(`--alignments ${opts.alignments.join(',')}`);
  if (opts.unsafeShares) flags.push(`--unsafe-shares ${opts.unsafeShares.join(',')}`);
  if (opts.safetyBy && opts.safetyBy !== 'prompt') flags.push(`--safety-by ${opts.safetyBy}`);
  return `mpo testbed build --testbed tiny-multilingual-transfer ${flags.join(' ')} --threads ${threads}`;
}

export async function buildTransferTestbed(opts: TransferTestbedOptions): Promise<TransferTestbedResult> {
  // Long: the testbed build in order (corpus, model, training, files, hash) with its timings.
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const threads = opts.threads ?? 2;
  const cutoff = opts.cutoff ?? 96;
  const safetyShares = opts.safetyShares ?? SISTER_LANGUAGES.map((l) => l.safetyShare);
  const alignments = opts.alignments ?? SISTER_LANGUAGES.map((l) => l.alignment);
  const unsafeShares = opts.unsafeShares ?? SISTER_LANGUAGES.map((l) => l.unsafeShare);
  const safetyBy = opts.safetyBy ?? 'prompt';
  const corpus = transferCorpus(opts.seed, opts.scale ?? 1, { safetyShares, unsafeShares, safetyBy });
  mkdirSync(opts.out, { recursive: true });
  writeTransferFiles(opts.out, corpus);
  const tok = await HfTokenizer.fromDir(opts.out);
  const examples = encodeSft(tok, corpus.sft, cutoff);
  const initSeed = opts.initSeed ?? opts.seed;
  const training = testbedTraining(
    initSeed,
    { epochs: opts.epochs ?? TRANSFER_EPOCHS, batchSize: 32, microBatchSize: 16, warmupRatio: 0.05 },
    opts.training,
  );
  const work = join(opts.out, '.build');
  const initDir = join(work, 'init');
  const fresh = Model.init(transferConfig(tok.vocabSize), { seed: initSeed, threads });
  await fresh.save(initDir);
  fresh.dispose();
  alignSisterRows(join(initDir, 'model.safetensors'), tok, corpus.lexicon, alignments);
  const model = await Model.load(initDir, { threads });
  const identity = {
    seed: opts.seed,
    ...(initSeed !== opts.seed ? { initSeed } : {}),
    training,
    counts: corpus.counts,
    cutoff,
  };
  const result = await trainTestbedSft(model, examples, training, {
    work,
    threads,
    identity,
    onStep: opts.onStep,
  });
  await result.model.save(opts.out);
  rmSync(work, { recursive: true, force: true });
  const weightsHash = result.model.weightsHash();
  const fileHash = safetensorsSha256(opts.out);
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  writeFileSync(
    join(opts.out, 'testbed.json'),
    `${JSON.stringify(
      {
        id: TRANSFER_TESTBED_ID,
        synthetic: true,
        rebuild: rebuildCommand(opts, initSeed, threads),
        seed: opts.seed,
        ...(initSeed !== opts.seed ? { initSeed } : {}),
        threads,
        cutoff,
        scale: opts.scale ?? 1,
        safetyBy,
        languages: SISTER_LANGUAGES.map((l, i) => ({
          ...l,
          alignment: alignments[i],
          safetyShare: safetyShares[i],
          unsafeShare: unsafeShares[i],
        })),
        labelNoise: corpus.labelNoise,
        training,
        examples: corpus.counts,
        steps: result.step,
        buildSeconds: Math.round(seconds),
        buildCpuSeconds: Math.round(cpuSeconds),
        weightsHash,
        modelSafetensorsSha256: fileHash,
        files: testbedFileHashes(opts.out),
      },
      null,
      2,
    )}\n`,
  );
  return { dir: opts.out, counts: corpus.counts, weightsHash, steps: result.step, seconds, cpuSeconds };
}
