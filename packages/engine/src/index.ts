// @mpo/engine: Llama/Qwen2 models in libtorch (N-API addon), tokenizers and chat templates.

export {
  BENCH_ARG_OPTIONS,
  type BenchOptions,
  type BenchResult,
  benchEngine,
  CONFIG_S,
  PEAK_FLOPS,
} from './bench.js';
export {
  CHAT_TEMPLATES,
  type ChatMessage,
  type ChatTemplate,
  encodeChat,
  encodePair,
  guessTemplate,
  type RenderOptions,
  renderChat,
  stopTokenIds,
} from './chat.js';
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
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  fromPeftAdapterConfig,
  LORA_TARGET_MODULES,
  type LoraOptions,
  type LoraTargetModule,
  peftAdapterConfig,
  validateLora,
} from './lora.js';
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
  type WeightStorage,
} from './model.js';
export { engineInfo, native } from './native.js';
export { adamwShard, normBlock, type ShardStepOptions, sumSquaresBlocks } from './optimizer.js';
export {
  buildHeader,
  DEFAULT_MAX_SHARD_BYTES,
  planShards,
  readCheckpointTensors,
  readSafetensorsHeader,
  type ShardPlan,
  shardIndex,
} from './safetensors.js';
export {
  BYTE_SPECIALS,
  BYTE_VOCAB_SIZE,
  ByteTokenizer,
  HfTokenizer,
  loadTokenizer,
  type Tokenizer,
} from './tokenizer.js';
