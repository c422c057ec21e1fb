export { type AlpacaLoadOptions, loadAlpacaJson } from './alpaca.js';
export { DataError, type Dropped } from './errors.js';
export { hash53, hashHex } from './hash.js';
export { isObject } from './io.js';
export { klPartners, withKlCompletions } from './kl.js';
export {
  assignDistinct,
  detectLanguage,
  KNOWN_LANGUAGES,
  type KnownLanguage,
  scoreLanguages,
} from './lang.js';
export { loadMpoJson, type MpoLoadOptions, type MpoLoadResult } from './mpo.js';
export { type LoadResult, loadPairwiseJsonl, type PairwiseLoadOptions } from './pairwise.js';
export { loadPretokenizedJsonl, type PretokenizedLoadOptions } from './pretokenized.js';
export { Rng, type RngState } from './rng.js';
export { type Split, type SplitOptions, splitByGroup } from './split.js';
export {
  type Encoders,
  type PromptContext,
  plainEncoders,
  type TokenizeOptions,
  type Tokenizer,
  tokenizeMpo,
  tokenizePairwise,
  tokenizeSft,
} from './tokenize.js';
export {
  inferSeqlen,
  type Truncated,
  type TruncateOptions,
  truncatePair,
  truncateSingle,
} from './truncate.js';
// Every row type of types.ts is public.
export type * from './types.js';
