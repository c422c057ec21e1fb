// @mpo/eval: benchmark loaders, judges (built-in refusal detector, OpenAI-compatible LLM judge), attack success
// rate, and utility helpers.
export {
  type BenchmarkPrompt,
  type CsrtPrompt,
  loadCsrt,
  loadMultiJail,
  type MultiJailOptions,
  type MultiJailPrompt,
  type MultiJailSet,
  parseTags,
} from './benchmarks.js';
export { writeCsrtSample } from './csrt-sample.js';
export { CsvError, type CsvRecord, type CsvTable, parseCsv, readCsv } from './csv.js';
export {
  createRefusalDetector,
  type RefusalDetector,
  type RefusalDetectorOptions,
  type RefusalVerdict,
} from './detector.js';
export { readGenerations, writeGenerations } from './generations.js';
export {
  type AsrCell,
  type AsrReport,
  attackSuccessRate,
  createDefaultJudge,
  createDetectorJudge,
  JUDGE_LABELS,
  type Judge,
  type JudgeItem,
  type JudgeLabel,
  type Judgement,
  judgeAttackSuccess,
} from './judge.js';
export {
  DEFAULT_MULTIJAIL_LANGUAGES,
  isMultiJailLanguage,
  MULTIJAIL_LANGUAGES,
  type MultiJailLanguage,
} from './languages.js';
export { JudgementCache, judgementKey } from './llm/cache.js';
export { ChatError, chatCompletionsUrl } from './llm/chat.js';
export { JUDGE_PROTOCOL, parseLabel } from './llm/prompts.js';
export { RateLimiter, type RateLimitOptions } from './llm/rate-limit.js';
export { createLlmJudge, type LlmJudge, type LlmJudgeOptions, llmJudgeOptionsFromEnv } from './llm-judge.js';
export {
  type DetectorMeasurement,
  type DetectorScore,
  formatMeasurement,
  measureDetector,
} from './measure.js';
export {
  loadMpoResponses,
  MPO_FILES,
  type MpoField,
  type MpoResponse,
  splitOfGroup,
} from './mpo-responses.js';
export { normalizeText } from './normalize.js';
export { type PhraseList, REFUSAL_PHRASES } from './phrases.js';
export {
  DEFAULT_LABEL_FILES,
  drawRefusalSample,
  type HandLabel,
  type LabelFile,
  readLabelFile,
} from './refusal-sample.js';
export * from './run-eval.js';
export { guessLanguage } from './script-lang.js';
export * from './testbed.js';
export * from './transfer-lexicon.js';
export * from './transfer-measure.js';
export * from './transfer-testbed.js';
export {
  ALPACA_HELDOUT,
  type AlpacaItem,
  alpacaHeldOut,
  type HeldOutOptions,
  type HeldOutSplit,
  heldOutSplit,
  type NllPart,
  perplexity,
  readAlpaca,
} from './utility.js';
