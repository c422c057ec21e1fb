// Evaluation of one checkpoint, as the MPO paper reports it:
//   reward-gap  RG = avgLogp(chosen) − avgLogp(rejected) per language on held-out MPO pairs (Table 1);
//   multijail   attack success rate per language: one greedy response per prompt through the chat
//               template, judged; ASR = share not refused (unsafe and irrelevant both count);
//   csrt        the same on code-switching prompts;
//   utility     perplexity of held-out alpaca en/zh outputs given their instructions.
// Every figure is emitted as one result {benchmark, language, metric, value, n}.
import { existsSync } from 'node:fs';
import { isObject } from '@mpo/data';
import type { Model } from '@mpo/engine';
import {
  buildDataset,
  ConfigProblemsError,
  CSRT_ENV,
  CSRT_SOURCE,
  loadInitialModel,
  type Problem,
  parseTrainConfig,
  resolveBuiltinBenchmark,
  resolveBuiltinData,
  resolveBuiltinModel,
  resolveModelDir,
  resolveTokenization,
  type Tokenization,
  type TrainExample,
} from '@mpo/trainer';
import { loadCsrt, loadMultiJail } from './benchmarks.js';
import { createRefusalDetector } from './detector.js';
import { createDefaultJudge, type Judge, type JudgeLabel, judgeAttackSuccess } from './judge.js';
import { createLlmJudge, llmJudgeOptionsFromEnv } from './llm-judge.js';
import { isSisterLanguage, readTestbedFiles, transferBenchmarks } from './transfer-measure.js';
import { TRANSFER_TESTBED_ID } from './transfer-testbed.js';
import { ALPACA_HELDOUT, type AlpacaItem, alpacaHeldOut, perplexity } from './utility.js';

export const BENCHMARKS = ['reward-gap', 'multijail', 'csrt', 'utility'] as const;
export type Benchmark = (typeof BENCHMARKS)[number];

export interface EvalConfig {
  model: string;
  tokenizer?: string;
  template?: 'byte' | 'llama3' | 'qwen2' | 'gemma' | 'plain';
  benchmarks: Benchmark[];
  /** MultiJail languages (default the paper's en zh ko ar bn sw). */
  languages?: string[];
  /** At most this many prompts per language (MultiJail, CSRT) and held-out pairs per language (reward gap). */
  maxPrompts: number;
  maxNewTokens: number;
  judge: 'detector' | 'llm';
  /** MPO data for the reward gap, split exactly as training splits it. */
  data: { path: string; heldOut: number; splitSeed: number };
  /** The CSRT file (not shipped: see CSRT_SOURCE); set when `benchmarks` holds csrt. */
  csrtPath?: string;
  /** Held-out alpaca items per language for utility. */
  utilityItems: number;
  /** Tokens of a held-out pair for the reward gap: the training's cutoff, so it matches the sweep's metric. */
  cutoff: number;
  /** Tokens of prompt + answer in MultiJail/CSRT generation and of utility texts (default: `cutoff`). */
  benchmarkCutoff: number;
  batchSize: number;
  threads: number;
  device: string;
}

export interface EvalResult {
  benchmark: Benchmark;
  language: string;
  metric: string;
  value: number;
  n: number;
}

/**
 * One generated response of an attack-success benchmark with the judge's verdict: what the ASR counted. Written as
 * one JSON line each by `mpo eval --save-responses FILE` and stored by eval jobs (the Generation table).
 */
export interface GenerationRecord {
  benchmark: 'multijail' | 'csrt';
  language: string;
  /** The benchmark's row id, shared by a prompt's translations. */
  promptId: string;
  prompt: string;
  response: string;
  /** safe | unsafe | irrelevant; unsafe and irrelevant count as attack success. */
  verdict: JudgeLabel;
  reason?: string;
  judge: string;
}

export type { Problem };

export class EvalConfigError extends ConfigProblemsError {
  constructor(problems: Problem[]) {
    super('evaluation config', problems);
    this.name = 'EvalConfigError';
  }
}

export function parseEvalConfig(raw: unknown): EvalConfig {
  const problems: Problem[] = [];
  const bad = (path: string, reason: string) => problems.push({ path, reason });
  if (!isObject(raw)) throw new EvalConfigError([{ path: '(root)', reason: 'must be a JSON object' }]);
  if (typeof raw.model !== 'string' || !raw.model) bad('model', 'required: a model directory or builtin id');
  const benchmarks = raw.benchmarks ?? ['reward-gap', 'multijail', 'utility'];
  if (!Array.isArray(benchmarks) || benchmarks.some((b) => !BENCHMARKS.includes(b))) {
    bad('benchmarks', `must be a list of ${BENCHMARKS.join(', ')}`);
  }
  const int = (k: string, dflt: number, min: number) => {
    const v = raw[k] ?? dflt;
    if (!Number.isInteger(v) || (v as number) < min) bad(k, `must be an integer ≥ ${min}`);
    return v as number;
  };
  // "builtin" is the run spec's name for the built-in refusal detector.
  const judge = raw.judge === 'builtin' || raw.judge === undefined ? 'detector' : raw.judge;
  if (judge !== 'detector' && judge !== 'llm') bad('judge', 'must be "detector" (alias "builtin") or "llm"');
  if (
    raw.languages !== undefined &&
    !(Array.isArray(raw.languages) && raw.languages.every((l) => typeof l === 'string'))
  ) {
    bad('languages', 'must be a list of language codes');
  }
  const data = isObject(raw.data) ? raw.data : {};
  const path = typeof data.path === 'string' ? data.path : 'builtin:mpo-llama';
  const csrtPath = Array.isArray(benchmarks) && benchmarks.includes('csrt') ? csrtFile(raw, bad) : undefined;
  const cfg: EvalConfig = {
    model: raw.model as string,
    ...(typeof raw.tokenizer === 'string' ? { tokenizer: raw.tokenizer } : {}),
    ...(typeof raw.template === 'string' ? { template: raw.template as EvalConfig['template'] } : {}),
    benchmarks: benchmarks as Benchmark[],
    ...(raw.languages ? { languages: raw.languages as string[] } : {}),
    maxPrompts: int('maxPrompts', 50, 1),
    maxNewTokens: int('maxNewTokens', 64, 1),
    judge: judge as EvalConfig['judge'],
    data: {
      path: path.startsWith('builtin:') ? resolveBuiltinData(path).path : path,
      heldOut: typeof data.heldOut === 'number' ? data.heldOut : 0.1,
      splitSeed: typeof data.splitSeed === 'number' ? data.splitSeed : 0,
    },
    utilityItems: int('utilityItems', 100, 1),
    cutoff: int('cutoff', 512, 8),
    benchmarkCutoff: int('benchmarkCutoff', (raw.cutoff as number | undefined) ?? 512, 8),
    batchSize: int('batchSize', 8, 1),
    threads: int('threads', 1, 1),
    device: typeof raw.device === 'string' ? raw.device : 'cpu',
    ...(csrtPath ? { csrtPath } : {}),
  };
  if (problems.length) throw new EvalConfigError(problems);
  return cfg;
}

/** The CSRT file: the config's `csrt.path`, else $MPO_CSRT_PATH; the project does not ship it (no licence upstream). */
function csrtFile(
  raw: Record<string, unknown>,
  bad: (path: string, reason: string) => void,
): string | undefined {
  const given = isObject(raw.csrt) ? raw.csrt.path : raw.csrt;
  if (given !== undefined && (typeof given !== 'string' || !given)) {
    bad('csrt.path', 'must be the path of a CSRT csv file');
    return undefined;
  }
  const path = (given as string | undefined) ?? process.env[CSRT_ENV];
  const where = `CSRT is not shipped with the project (no licence upstream): download ${CSRT_SOURCE}`;
  if (!path) {
    bad(
      'csrt.path',
      `required for the csrt benchmark. ${where} and pass --csrt PATH, csrt.path, or ${CSRT_ENV}`,
    );
  } else if (!existsSync(path)) {
    bad('csrt.path', `${path} does not exist. ${where}`);
  }
  return path;
}

interface Loaded {
  model: Model;
  tok: Tokenization;
}

async function load(cfg: EvalConfig): Promise<Loaded> {
  // Reuse the trainer's model resolution (dirs and builtin ids) and tokenization.
  const tc = parseTrainConfig({
    model: cfg.model,
    data: { format: 'mpo', path: cfg.data.path },
    method: 'sft',
    output: '/tmp/unused',
    threads: cfg.threads,
    device: cfg.device,
    ...(cfg.template ? { template: cfg.template } : {}),
    ...(cfg.tokenizer ? { tokenizer: cfg.tokenizer } : {}),
  });
  const model = await loadInitialModel(tc);
  const dir = resolveModelDir(tc.model);
  const tok = await resolveTokenization({
    modelDir: dir,
    architecture: model.config.architecture,
    vocabSize: model.config.vocabSize,
    ...(cfg.tokenizer ? { tokenizer: cfg.tokenizer } : {}),
    ...(cfg.template ? { template: cfg.template } : {}),
  });
  return { model, tok };
}

export interface EvalProgress {
  benchmark: string;
  done: number;
  total: number;
}
type ProgressFn = (done: number, total: number) => void;

/**
 * Mean RG per language over held-out pairs; the dominant language's from the source side, once per prompt.
 * On the transfer testbed a sister language's pairs are its prompt group's English pair translated.
 */
async function rewardGap(
  cfg: EvalConfig,
  { model, tok }: Loaded,
  emit: (r: EvalResult) => void,
  progress?: ProgressFn,
) {
  const spec = {
    format: 'mpo' as const,
    path: cfg.data.path,
    heldOut: cfg.data.heldOut,
    split: 'heldout' as const,
    splitSeed: cfg.data.splitSeed,
  };
  // On the transfer testbed the sister languages' pairs are the English ones translated (the paper's RG).
  const testbed = transferTestbedOf(cfg);
  const ds = buildDataset(spec, tok.encoders, cfg.cutoff, {
    vocabSize: model.config.vocabSize,
    ...(testbed ? { mapRows: testbed.rgRows } : {}),
  });
  const byLang = new Map<string, TrainExample[]>();
  const seenGroup = new Set<string>();
  for (const ex of ds.examples) {
    const list = byLang.get(ex.lang) ?? [];
    if (list.length < cfg.maxPrompts) list.push(ex);
    byLang.set(ex.lang, list);
    // The dominant pair is the same for the six rows of one prompt: count it once.
    const key = JSON.stringify(ex.dominant?.prompt);
    if (ds.dominantLanguage && ex.dominant && !seenGroup.has(key)) {
      seenGroup.add(key);
      const d = byLang.get(ds.dominantLanguage) ?? [];
      if (d.length < cfg.maxPrompts)
        d.push({ id: `${ex.id}:dominant`, lang: ds.dominantLanguage, target: ex.dominant });
      byLang.set(ds.dominantLanguage, d);
    }
  }
  const total = [...byLang.values()].reduce((a, exs) => a + exs.length, 0);
  let done = 0;
  progress?.(0, total);
  for (const [lang, exs] of [...byLang].sort(([a], [b]) => a.localeCompare(b))) {
    let sum = 0;
    for (let i = 0; i < exs.length; i += cfg.batchSize) {
      const chunk = exs.slice(i, i + cfg.batchSize);
      const seqs = (side: 'chosen' | 'rejected') => ({
        sequences: chunk.map((e) => [...e.target.prompt, ...e.target[side]]),
        promptLengths: chunk.map((e) => e.target.prompt.length),
      });
      const c = await model.score(seqs('chosen'));
      const r = await model.score(seqs('rejected'));
      for (let k = 0; k < chunk.length; k++)
        sum += c.sumLogp[k]! / c.tokens[k]! - r.sumLogp[k]! / r.tokens[k]!;
      done += chunk.length;
      progress?.(done, total);
    }
    emit({ benchmark: 'reward-gap', language: lang, metric: 'rg', value: sum / exs.length, n: exs.length });
  }
}

/** Prompt ids through the chat template, the user text shortened until prompt + answer fit the cutoff. */
function promptIds(tok: Tokenization, text: string, budget: number): number[] {
  const enc = (t: string) => tok.encoders.encodePrompt(t, { history: [], lang: '' });
  let ids = enc(text);
  if (ids.length <= budget) return ids;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (enc(text.slice(0, mid)).length <= budget) lo = mid;
    else hi = mid - 1;
  }
  ids = enc(text.slice(0, lo));
  return ids;
}

export async function generateResponses(
  loaded: Loaded,
  prompts: readonly string[],
  cfg: Pick<EvalConfig, 'maxNewTokens' | 'benchmarkCutoff' | 'batchSize'>,
  progress?: ProgressFn,
): Promise<string[]> {
  const { model, tok } = loaded;
  const { stopTokenIds } = await import('@mpo/engine');
  const eos = stopTokenIds(tok.tokenizer, tok.template);
  const budget = Math.max(
    8,
    Math.min(cfg.benchmarkCutoff, model.config.maxPositionEmbeddings) - cfg.maxNewTokens,
  );
  const out: string[] = [];
  for (let i = 0; i < prompts.length; i += cfg.batchSize) {
    const ids = prompts.slice(i, i + cfg.batchSize).map((p) => promptIds(tok, p, budget));
    const gen = await model.generate(ids, {
      maxNewTokens: cfg.maxNewTokens,
      eosTokenIds: eos,
      temperature: 0,
    });
    for (const g of gen) out.push(tok.tokenizer.decode(g, { skipSpecialTokens: true }));
    progress?.(out.length, prompts.length);
  }
  return out;
}

function judgeFor(cfg: EvalConfig): Judge {
  return cfg.judge === 'llm' ? createLlmJudge(llmJudgeOptionsFromEnv()) : createDefaultJudge();
}

async function attackSuccess(
  cfg: EvalConfig,
  loaded: Loaded,
  benchmark: 'multijail' | 'csrt',
  emit: (r: EvalResult) => void,
  onGeneration?: (g: GenerationRecord) => void,
  progress?: ProgressFn,
) {
  let items: { id: string; lang: string; prompt: string }[];
  const testbed = transferTestbedOf(cfg);
  if (benchmark === 'multijail' && testbed) {
    items = cfg.languages!.flatMap((l) => testbed.harmful(l).slice(0, cfg.maxPrompts));
  } else if (benchmark === 'multijail') {
    const set = loadMultiJail(
      resolveBuiltinBenchmark('builtin:multijail'),
      cfg.languages ? { languages: cfg.languages } : {},
    );
    items = set.languages.flatMap((l) => (set.byLanguage[l] ?? []).slice(0, cfg.maxPrompts));
  } else {
    items = loadCsrt(cfg.csrtPath ?? '').slice(0, cfg.maxPrompts);
  }
  progress?.(0, items.length);
  const responses = await generateResponses(
    loaded,
    items.map((i) => i.prompt),
    cfg,
    progress,
  );
  const judged = items.map((it, k) => ({ lang: it.lang, prompt: it.prompt, response: responses[k]! }));
  const judge = judgeFor(cfg);
  // The judge reads English: a sister-language answer is read back word for word first.
  const toJudge = testbed ? judged.map((j) => ({ ...j, response: testbed.toEnglish(j.response) })) : judged;
  const report = await judgeAttackSuccess(judge, toJudge);
  judged.forEach((j, k) => {
    const v = report.judgements[k]!;
    onGeneration?.({
      benchmark,
      language: j.lang,
      promptId: items[k]!.id,
      prompt: j.prompt,
      response: j.response,
      verdict: v.label,
      ...(v.reason !== undefined ? { reason: v.reason } : {}),
      judge: judge.name,
    });
  });
  for (const [lang, c] of Object.entries(report.perLanguage)) {
    emit({ benchmark, language: lang, metric: 'asr', value: c.asr, n: c.n });
  }
  if (benchmark === 'multijail') {
    emit({ benchmark, language: 'avg', metric: 'asr', value: report.average, n: report.overall.n });
  }
}

/**
 * The transfer testbed's own held-out benchmarks when the evaluated languages include its sister languages
 * (docs/testbed.md): their prompts exist only as the testbed's relexification.
 */
function transferTestbedOf(cfg: EvalConfig): ReturnType<typeof transferBenchmarks> | undefined {
  if (!cfg.languages?.some(isSisterLanguage)) return undefined;
  return transferBenchmarks(readTestbedFiles(resolveBuiltinModel(TRANSFER_TESTBED_ID)));
}

/**
 * Perplexity of held-out alpaca answers per language. On the transfer testbed also, per language, what the
 * issue asks to stand beside every reward gap, on the same held-out harmless prompts (docs/testbed.md):
 *   rg_harmless = mean over items of avgLogp(refusal template) − avgLogp(reference answer)
 *   refused     = share of the first maxPrompts items whose greedy answer the refusal detector counts as a refusal.
 */
async function utility(
  cfg: EvalConfig,
  loaded: Loaded,
  emit: (r: EvalResult) => void,
  progress?: ProgressFn,
) {
  const { model, tok } = loaded;
  const testbed = transferTestbedOf(cfg);
  const langs = testbed ? cfg.languages! : ['en', 'zh'];
  let done = 0;
  const encode = (it: AlpacaItem, lang: string, answer: string) => {
    const prompt = tok.encoders.encodePrompt(it.input ? `${it.instruction}\n${it.input}` : it.instruction, {
      history: [],
      lang,
    });
    const all = [...prompt, ...tok.encoders.encodeResponse(answer)].slice(0, cfg.benchmarkCutoff);
    return { all, promptLength: Math.min(prompt.length, all.length - 1) };
  };
  const score = (seqs: { all: number[]; promptLength: number }[]) =>
    model.score({ sequences: seqs.map((c) => c.all), promptLengths: seqs.map((c) => c.promptLength) });
  for (const lang of langs) {
    const items = testbed
      ? testbed.harmless(lang).slice(0, cfg.utilityItems)
      : alpacaHeldOut(resolveBuiltinData(`builtin:alpaca-${lang}`).path, ALPACA_HELDOUT).heldOut.slice(
          0,
          cfg.utilityItems,
        );
    const parts: { sumNll: number; tokens: number }[] = [];
    let gapSum = 0;
    for (let i = 0; i < items.length; i += cfg.batchSize) {
      const chunk = items.slice(i, i + cfg.batchSize);
      const s = await score(chunk.map((it) => encode(it, lang, it.output)));
      for (let k = 0; k < chunk.length; k++) parts.push({ sumNll: -s.sumLogp[k]!, tokens: s.tokens[k]! });
      if (testbed) {
        const r = await score(chunk.map((it) => encode(it, lang, testbed.refusal(lang))));
        for (let k = 0; k < chunk.length; k++)
          gapSum += r.sumLogp[k]! / r.tokens[k]! - s.sumLogp[k]! / s.tokens[k]!;
      }
      done += chunk.length;
      progress?.(done, langs.length * items.length);
    }
    emit({ benchmark: 'utility', language: lang, metric: 'ppl', value: perplexity(parts), n: items.length });
    if (!testbed) continue;
    emit({
      benchmark: 'utility',
      language: lang,
      metric: 'rg_harmless',
      value: gapSum / items.length,
      n: items.length,
    });
    const asked = items.slice(0, cfg.maxPrompts);
    const answers = await generateResponses(
      loaded,
      asked.map((it) => (it.input ? `${it.instruction}\n${it.input}` : it.instruction)),
      cfg,
    );
    const detector = createRefusalDetector();
    const refused = answers.filter((a) => detector.detect(testbed.toEnglish(a), 'en').refusal).length;
    emit({
      benchmark: 'utility',
      language: lang,
      metric: 'refused',
      value: refused / asked.length,
      n: asked.length,
    });
  }
}

export async function runEvaluation(
  cfg: EvalConfig,
  emit: (r: EvalResult) => void,
  opts: {
    /** Each judged response of MultiJail/CSRT, after its benchmark is judged. */
    onGeneration?: (g: GenerationRecord) => void;
    /** Items of the current benchmark done so far, of `total` (pairs scored, prompts answered). */
    onProgress?: (p: EvalProgress) => void;
  } = {},
): Promise<void> {
  const loaded = await load(cfg);
  try {
    for (const b of cfg.benchmarks) {
      const progress: ProgressFn = (done, total) => opts.onProgress?.({ benchmark: b, done, total });
      if (b === 'reward-gap') await rewardGap(cfg, loaded, emit, progress);
      else if (b === 'utility') await utility(cfg, loaded, emit, progress);
      else await attackSuccess(cfg, loaded, b, emit, opts.onGeneration, progress);
    }
  } finally {
    loaded.model.dispose();
  }
}
