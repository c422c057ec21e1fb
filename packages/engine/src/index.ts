// @mpo/engine: Llama/Qwen2 models in libtorch (N-API addon), tokenizers and chat templates.
export {
  ARCHITECTURES,
  type Architecture,
  eosIds,
  fromHfConfig,
  headDimOf,
  type Llama3RopeScaling,
  type LlamaConfig,
  toHfConfig,
  validateConfig,
} from './config.js';
export {
  type Device,
  type Dtype,
  type GenerateOptions,
  type InitOptions,
  type LoadOptions,
  Model,
  type Pooling,
  type ScoreBatch,
  type ScoreGrads,
  type ScoreOptions,
  type ScoreResult,
  type StepOptions,
} from './model.js';
export { native } from './native.js';
