// Model configuration: the Hugging Face config.json fields the engine uses, in camelCase.
import type { NativeConfig } from './native.js';

export type Architecture = 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'Gemma2ForCausalLM';
export const ARCHITECTURES: readonly Architecture[] = [
  'LlamaForCausalLM',
  'Qwen2ForCausalLM',
  'Gemma2ForCausalLM',
];

/**
 * Gemma-2's config fields (transformers' Gemma2Config). The architecture itself also means: RMSNorm
 * with (1 + weight), embeddings scaled by sqrt(hidden_size), norms before and after attention and MLP.
 */
export interface Gemma2Fields {
  /** hidden_activation: gelu_pytorch_tanh (GeGLU with tanh GELU). */
  hiddenActivation: 'gelu_pytorch_tanh';
  /** Attention scores are scaled by queryPreAttnScalar^-1/2 (not head_dim^-1/2). */
  queryPreAttnScalar: number;
  /** Keys further back than this are hidden from queries of the even layers (0, 2, ...); null: none. */
  slidingWindow: number | null;
  /** Scores s -> cap * tanh(s / cap) before the mask; null: off. */
  attnLogitSoftcapping: number | null;
  /** Logits z -> cap * tanh(z / cap); null: off. */
  finalLogitSoftcapping: number | null;
}

/** rope_scaling with rope_type "llama3" (Llama 3.1 / 3.2). */
export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface LlamaConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** Defaults to hiddenSize / numAttentionHeads. */
  headDim?: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: Llama3RopeScaling | null;
  /** q/k/v projections have a bias (always true for Qwen2). */
  attentionBias: boolean;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId?: number;
  eosTokenId?: number | number[];
  padTokenId?: number;
  /** Present exactly for Gemma2ForCausalLM. */
  gemma2?: Gemma2Fields;
}

type Json = Record<string, unknown>;

function need(o: Json, key: string, what = 'config.json'): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new Error(`${what}: missing or non-numeric "${key}"`);
  return v;
}
function opt(o: Json, key: string): number | undefined {
  const v = o[key];
  return typeof v === 'number' ? v : undefined;
}

/** Parse a Hugging Face config.json object. Throws naming the problem for what the engine cannot run. */
export function fromHfConfig(hf: Json): LlamaConfig {
  const archs = hf.architectures;
  const arch = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  if (!arch || !(ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new Error(
      `config.json: unknown architecture ${JSON.stringify(arch ?? hf.model_type ?? null)} (supported: ${ARCHITECTURES.join(', ')})`,
    );
  }
  const architecture = arch as Architecture;
  const gemma = architecture === 'Gemma2ForCausalLM';
  if (!gemma) {
    const act = hf.hidden_act ?? 'silu';
    if (act !== 'silu')
      throw new Error(`config.json: hidden_act "${String(act)}" is not supported (only silu)`);
  }
  if (architecture === 'LlamaForCausalLM' && hf.attention_bias === true) {
    throw new Error('config.json: attention_bias=true for LlamaForCausalLM (biased o_proj) is not supported');
  }
  if (hf.mlp_bias === true) throw new Error('config.json: mlp_bias=true is not supported');
  if (architecture === 'Qwen2ForCausalLM' && hf.use_sliding_window === true) {
    throw new Error('config.json: use_sliding_window=true is not supported');
  }
  const hiddenSize = need(hf, 'hidden_size');
  const numAttentionHeads = need(hf, 'num_attention_heads');
  let ropeScaling: Llama3RopeScaling | null = null;
  const rs = hf.rope_scaling as Json | null | undefined;
  if (rs) {
    const type = rs.rope_type ?? rs.type;
    if (type === 'default') {
      ropeScaling = null;
    } else if (type !== 'llama3') {
      throw new Error(
        `config.json: rope_scaling type ${JSON.stringify(type)} is not supported (only llama3)`,
      );
    } else {
      ropeScaling = {
        ropeType: 'llama3',
        factor: need(rs, 'factor', 'config.json rope_scaling'),
        lowFreqFactor: need(rs, 'low_freq_factor', 'config.json rope_scaling'),
        highFreqFactor: need(rs, 'high_freq_factor', 'config.json rope_scaling'),
        originalMaxPositionEmbeddings: need(
          rs,
          'original_max_position_embeddings',
          'config.json rope_scaling',
        ),
      };
    }
  }
  const eos = hf.eos_token_id;
  const cfg: LlamaConfig = {
    architecture,
    vocabSize: need(hf, 'vocab_size'),
    hiddenSize,
    intermediateSize: need(hf, 'intermediate_size'),
    numHiddenLayers: need(hf, 'num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads: opt(hf, 'num_key_value_heads') ?? numAttentionHeads,
    rmsNormEps: opt(hf, 'rms_norm_eps') ?? 1e-6,
    ropeTheta: opt(hf, 'rope_theta') ?? 10000,
    ropeScaling,
    attentionBias: architecture === 'Qwen2ForCausalLM' ? true : hf.attention_bias === true,
    tieWordEmbeddings: hf.tie_word_embeddings === true,
    maxPositionEmbeddings: opt(hf, 'max_position_embeddings') ?? 2048,
  };
  const headDim = opt(hf, 'head_dim');
  if (headDim !== undefined) cfg.headDim = headDim;
  const bos = opt(hf, 'bos_token_id');
  if (bos !== undefined) cfg.bosTokenId = bos;
  if (typeof eos === 'number' || (Array.isArray(eos) && eos.every((x) => typeof x === 'number'))) {
    cfg.eosTokenId = eos as number | number[];
  }
  const pad = opt(hf, 'pad_token_id');
  if (pad !== undefined) cfg.padTokenId = pad;
  if (gemma) gemma2FromHf(hf, cfg);
  validateConfig(cfg);
  return cfg;
}

// Gemma2Config's defaults (transformers configuration_gemma2.py) where a field is absent.
function gemma2FromHf(hf: Json, cfg: LlamaConfig): void {
  // Gemma2 uses hidden_activation; an old hidden_act key is what transformers falls back to.
  const act = hf.hidden_activation ?? hf.hidden_act ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh')
    throw new Error(
      `config.json: hidden_activation "${String(act)}" is not supported for Gemma2 (only gelu_pytorch_tanh)`,
    );
  const nullable = (key: string, dflt: number): number | null =>
    hf[key] === null ? null : (opt(hf, key) ?? dflt);
  cfg.gemma2 = {
    hiddenActivation: 'gelu_pytorch_tanh',
    queryPreAttnScalar: opt(hf, 'query_pre_attn_scalar') ?? 256,
    slidingWindow: nullable('sliding_window', 4096),
    attnLogitSoftcapping: nullable('attn_logit_softcapping', 50),
    finalLogitSoftcapping: nullable('final_logit_softcapping', 30),
  };
  cfg.headDim ??= 256;
  cfg.tieWordEmbeddings = hf.tie_word_embeddings !== false;
  cfg.attentionBias = hf.attention_bias === true;
  cfg.rmsNormEps = opt(hf, 'rms_norm_eps') ?? 1e-6;
}

/** The config.json object for a config (transformers field names). */
export function toHfConfig(
  cfg: LlamaConfig,
  torchDtype: 'float32' | 'bfloat16' | 'float16' = 'float32',
): Json {
  const qwen = cfg.architecture === 'Qwen2ForCausalLM';
  const g2 = cfg.gemma2;
  const out: Json = {
    architectures: [cfg.architecture],
    model_type: qwen ? 'qwen2' : g2 ? 'gemma2' : 'llama',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numHiddenLayers,
    num_attention_heads: cfg.numAttentionHeads,
    num_key_value_heads: cfg.numKeyValueHeads,
    hidden_act: g2 ? g2.hiddenActivation : 'silu',
    max_position_embeddings: cfg.maxPositionEmbeddings,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: cfg.ropeScaling
      ? {
          rope_type: 'llama3',
          factor: cfg.ropeScaling.factor,
          low_freq_factor: cfg.ropeScaling.lowFreqFactor,
          high_freq_factor: cfg.ropeScaling.highFreqFactor,
          original_max_position_embeddings: cfg.ropeScaling.originalMaxPositionEmbeddings,
        }
      : null,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    torch_dtype: torchDtype,
  };
  if (cfg.headDim !== undefined) out.head_dim = cfg.headDim;
  if (!qwen) out.attention_bias = cfg.attentionBias;
  if (qwen) out.use_sliding_window = false;
  if (g2) {
    out.hidden_activation = g2.hiddenActivation;
    out.query_pre_attn_scalar = g2.queryPreAttnScalar;
    out.sliding_window = g2.slidingWindow;
    out.attn_logit_softcapping = g2.attnLogitSoftcapping;
    out.final_logit_softcapping = g2.finalLogitSoftcapping;
    out.head_dim = headDimOf(cfg);
  }
  if (cfg.bosTokenId !== undefined) out.bos_token_id = cfg.bosTokenId;
  if (cfg.eosTokenId !== undefined) out.eos_token_id = cfg.eosTokenId;
  if (cfg.padTokenId !== undefined) out.pad_token_id = cfg.padTokenId;
  return out;
}

export function headDimOf(cfg: LlamaConfig): number {
  return cfg.headDim ?? cfg.hiddenSize / cfg.numAttentionHeads;
}

export function eosIds(cfg: LlamaConfig): number[] {
  const e = cfg.eosTokenId;
  return e === undefined ? [] : Array.isArray(e) ? e : [e];
}

export function validateConfig(cfg: LlamaConfig): void {
  if (!(ARCHITECTURES as readonly string[]).includes(cfg.architecture)) {
    throw new Error(
      `unknown architecture ${JSON.stringify(cfg.architecture)} (supported: ${ARCHITECTURES.join(', ')})`,
    );
  }
  const ints: (keyof LlamaConfig)[] = [
    'vocabSize',
    'hiddenSize',
    'intermediateSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'numKeyValueHeads',
  ];
  for (const k of ints) {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
      throw new Error(`config: ${k} must be a positive integer`);
  }
  const hd = headDimOf(cfg);
  if (!Number.isInteger(hd) || hd <= 0 || hd % 2 !== 0) {
    throw new Error(`config: head dimension ${hd} must be a positive even integer (set headDim)`);
  }
  if (cfg.numAttentionHeads % cfg.numKeyValueHeads !== 0) {
    throw new Error('config: numAttentionHeads must be a multiple of numKeyValueHeads');
  }
  if (cfg.architecture === 'LlamaForCausalLM' && cfg.attentionBias) {
    throw new Error(
      'config: attentionBias for LlamaForCausalLM (biased o_proj) is not supported; use Qwen2ForCausalLM',
    );
  }
  if (cfg.architecture === 'Qwen2ForCausalLM' && !cfg.attentionBias) {
    throw new Error('config: Qwen2ForCausalLM always has q/k/v biases (attentionBias must be true)');
  }
  validateGemma2(cfg);
}

function validateGemma2(cfg: LlamaConfig): void {
  const g2 = cfg.gemma2;
  const gemma = cfg.architecture === 'Gemma2ForCausalLM';
  if (gemma !== (g2 !== undefined))
    throw new Error('config: gemma2 fields must be given exactly for Gemma2ForCausalLM');
  if (!g2) return;
  if (cfg.attentionBias) throw new Error('config: attentionBias for Gemma2ForCausalLM is not supported');
  if (g2.hiddenActivation !== 'gelu_pytorch_tanh')
    throw new Error(`config: gemma2.hiddenActivation must be gelu_pytorch_tanh`);
  const positive = (v: number | null) => v === null || (Number.isFinite(v) && v > 0);
  if (!positive(g2.queryPreAttnScalar) || g2.queryPreAttnScalar === null)
    throw new Error('config: gemma2.queryPreAttnScalar must be a positive number');
  if (!positive(g2.attnLogitSoftcapping) || !positive(g2.finalLogitSoftcapping))
    throw new Error('config: gemma2 soft-capping values must be positive numbers or null');
  if (g2.slidingWindow !== null && !(Number.isInteger(g2.slidingWindow) && g2.slidingWindow > 0))
    throw new Error('config: gemma2.slidingWindow must be a positive integer or null');
}

/** The token fed at padded positions (visible only through 'meanUnmasked' pooling). */
export function padIdOf(cfg: LlamaConfig): number {
  return cfg.padTokenId ?? eosIds(cfg)[0] ?? 0;
}

export function toNativeConfig(cfg: LlamaConfig): NativeConfig {
  validateConfig(cfg);
  const rs = cfg.ropeScaling;
  const g2 = cfg.gemma2;
  return {
    arch: cfg.architecture === 'Qwen2ForCausalLM' ? 'qwen2' : g2 ? 'gemma2' : 'llama',
    vocab: cfg.vocabSize,
    hidden: cfg.hiddenSize,
    inter: cfg.intermediateSize,
    layers: cfg.numHiddenLayers,
    heads: cfg.numAttentionHeads,
    kvHeads: cfg.numKeyValueHeads,
    headDim: headDimOf(cfg),
    eps: cfg.rmsNormEps,
    theta: cfg.ropeTheta,
    bias: cfg.attentionBias,
    tie: cfg.tieWordEmbeddings,
    padId: padIdOf(cfg),
    llama3: rs
      ? {
          factor: rs.factor,
          lowFreqFactor: rs.lowFreqFactor,
          highFreqFactor: rs.highFreqFactor,
          originalMaxPositions: rs.originalMaxPositionEmbeddings,
        }
      : null,
    geluTanh: g2 !== undefined,
    queryScalar: g2?.queryPreAttnScalar ?? 0,
    attnSoftcap: g2?.attnLogitSoftcapping ?? 0,
    finalSoftcap: g2?.finalLogitSoftcapping ?? 0,
    slidingWindow: g2?.slidingWindow ?? 0,
  };
}
