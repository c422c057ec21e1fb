// `mpo plan`: per-rank memory of a training configuration, before anything is allocated.
//
// Parameters come from the model's config.json (the tensor shapes of LlamaForCausalLM,
// Qwen2ForCausalLM and Gemma2ForCausalLM). Two layouts are modelled:
//   'engine'    this project's engine: the fp32 flat parameters are kept whole on every rank (they
//               are the forward weights, plus a compute copy for bf16/fp16) and backward writes one
//               whole fp32 gradient buffer. Without ZeRO the flat parameters are also the fp32
//               master. ZeRO (stage 1 or 2, zero.ts) shards AdamW's two fp32 moments (8 bytes per
//               trainable parameter become 8/N); fp32 stage 2 adds the rank's summed-gradient shard
//               (+4/N) next to the engine's buffer. bf16 with ZeRO (full fine-tuning) uses the
//               engine's bf16 weight storage (model.h): weights 2 bytes and gradient buffer 2 bytes
//               per parameter, no fp32 copy of the model; the fp32 master slice and the moments
//               (12/N) and the fp32 gradient shard (4/N, both stages: zero.ts drains the bf16
//               gradient into it after every micro-batch) are the rank's, plus one bucket of the
//               gradient collectives (N x min(shard, 4 Mi) fp32 values) as workspace. (The bf16
//               weight storage is CPU-only today; a CUDA run still holds the fp32 layout.)
//   'deepspeed' the ZeRO paper's accounting (Rajbhandari et al., 2020, §5; DeepSpeed ZeRO-1/2):
//               2-byte weights and gradients plus K = 12 bytes of optimizer state per parameter
//               (fp32 master, momentum, variance) for mixed precision, the state sharded from
//               stage 1 and the gradients too from stage 2.
// Activations are the tensors autograd keeps for backward. Per decoder layer and token: read off
// the engine's forward (model.cpp), the RMSNorm inputs and outputs (4·D), the fused q|k|v projection
// and its rotated copy (2·Dqkv), the attention output (Dq), the gate|up projection (2·I) and the
// SwiGLU output (I); plus 5·D that the code does not show but the measurement does (norm
// intermediates and residual copies; calibrated once on configuration B of plan-bench, see
// BENCHMARKS.md). With activation checkpointing only each layer's input (D) is kept, plus one layer's
// full set while it is recomputed. The fp32 logits of the scored positions are kept too (V per
// token, all positions assumed scored). Workspace is what exists only during backward: the
// logits' gradient and the softmax and log-sum-exp temporaries, 4·V fp32 values per token.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LORA_TARGET_MODULES } from '@mpo/engine';
import { errorMessage } from '@mpo/util';

export const PLAN_DTYPES = ['fp32', 'bf16', 'fp16'] as const;
export type PlanDtype = (typeof PLAN_DTYPES)[number];
export const PLAN_LAYOUTS = ['engine', 'deepspeed'] as const;
export type PlanLayout = (typeof PLAN_LAYOUTS)[number];
const DTYPE_BYTES: Record<PlanDtype, number> = { fp32: 4, bf16: 2, fp16: 2 };
/** LoRA adapts these projections by default (all of the engine's: PEFT's "all-linear" set). */
export const LORA_TARGETS = LORA_TARGET_MODULES;

export interface PlanInput {
  /** A Hugging Face config.json object. */
  config: Record<string, unknown>;
  ranks: number;
  dtype: PlanDtype;
  zero: 0 | 1 | 2;
  /** LoRA rank (adapters on `loraTargets`; the base frozen in `dtype`). */
  lora?: number;
  /** Projections with adapters (default LORA_TARGETS, all of them). */
  loraTargets?: readonly string[];
  checkpointing: boolean;
  /** Sequences in one forward/backward on a rank (micro-batch × sequences per example). */
  batch: number;
  /** Tokens per sequence. */
  cutoff: number;
  /** Device memory, GB (1e9 bytes). */
  deviceMemoryGB: number;
  /** Reserved for the runtime (CUDA context, allocator slack), GB; counted when deciding `fits`. */
  reserveGB: number;
  layout: PlanLayout;
}

export interface ModelShape {
  architecture: string;
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  tied: boolean;
  qkvBias: boolean;
}

export interface MemoryPlan {
  model: ModelShape & { parameters: number; trainableParameters: number };
  input: Omit<PlanInput, 'config'>;
  /** Bytes per rank. */
  perRank: {
    weights: number;
    gradients: number;
    optimizer: number;
    activations: number;
    workspace: number;
    reserve: number;
    total: number;
  };
  deviceBytes: number;
  fits: boolean;
}

function num(cfg: Record<string, unknown>, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new Error(`config.json: "${key}" must be a positive number (got ${JSON.stringify(cfg[key])})`);
  return v;
}

/** The shapes a memory plan needs, from config.json fields (transformers' names). */
export function modelShape(cfg: Record<string, unknown>): ModelShape {
  const archs = cfg.architectures;
  const architecture =
    Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : String(cfg.model_type);
  const hidden = num(cfg, 'hidden_size');
  const heads = num(cfg, 'num_attention_heads');
  const gemma = /gemma/i.test(architecture);
  return {
    architecture,
    vocab: num(cfg, 'vocab_size'),
    hidden,
    intermediate: num(cfg, 'intermediate_size'),
    layers: num(cfg, 'num_hidden_layers'),
    heads,
    kvHeads: num(cfg, 'num_key_value_heads', heads),
    headDim: num(cfg, 'head_dim', hidden / heads),
    // Gemma ties the LM head to the embedding unless told otherwise.
    tied: cfg.tie_word_embeddings === true || (gemma && cfg.tie_word_embeddings !== false),
    qkvBias: /qwen2/i.test(architecture) || cfg.attention_bias === true,
  };
}

/** Parameter count of the decoder (embeddings, layers, norms, LM head). */
export function parameterCount(s: ModelShape): number {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const attn = s.hidden * (q + 2 * kv) + q * s.hidden + (s.qkvBias ? q + 2 * kv : 0);
  const mlp = 3 * s.hidden * s.intermediate;
  // Gemma-2 has four norms per layer (pre and post around attention and MLP), Llama/Qwen two.
  const norms = (/gemma2/i.test(s.architecture) ? 4 : 2) * s.hidden;
  const head = s.tied ? 0 : s.vocab * s.hidden;
  return s.vocab * s.hidden + s.layers * (attn + mlp + norms) + s.hidden + head;
}

/** LoRA adapter parameters: r·(in + out) per adapted projection per layer (engine csrc/lora.cpp). */
export function loraParameterCount(
  s: ModelShape,
  rank: number,
  targets: readonly string[] = LORA_TARGETS,
): number {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const D = s.hidden;
  const I = s.intermediate;
  const inOut: Record<string, number> = {
    q_proj: D + q,
    k_proj: D + kv,
    v_proj: D + kv,
    o_proj: q + D,
    gate_proj: D + I,
    up_proj: D + I,
    down_proj: I + D,
  };
  let sum = 0;
  for (const t of targets) {
    const n = inOut[t];
    if (n === undefined) throw new Error(`unknown LoRA target '${t}' (expected ${LORA_TARGETS.join(', ')})`);
    sum += n;
  }
  return s.layers * rank * sum;
}

/** Activation elements autograd keeps per token in one decoder layer (see the file comment). */
export function layerActivationElems(s: ModelShape): number {
  const q = s.heads * s.headDim;
  const qkv = q + 2 * s.kvHeads * s.headDim;
  return 9 * s.hidden + 2 * qkv + q + 3 * s.intermediate;
}

export function planMemory(input: PlanInput): MemoryPlan {
  const { ranks, dtype, zero, layout } = input;
  if (!Number.isInteger(ranks) || ranks < 1)
    throw new Error(`ranks must be a positive integer, got ${ranks}`);
  if (!(PLAN_DTYPES as readonly string[]).includes(dtype))
    throw new Error(`dtype must be one of ${PLAN_DTYPES.join(', ')}, got ${dtype}`);
  if (![0, 1, 2].includes(zero)) throw new Error(`zero must be 0, 1 or 2, got ${zero}`);
  for (const [k, v] of [
    ['batch', input.batch],
    ['cutoff', input.cutoff],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, got ${v}`);
  if (input.lora !== undefined && (!Number.isInteger(input.lora) || input.lora < 1))
    throw new Error(`lora must be a positive integer rank, got ${input.lora}`);
  const s = modelShape(input.config);
  const P = parameterCount(s);
  const lora = input.lora !== undefined;
  const T = lora ? loraParameterCount(s, input.lora!, input.loraTargets) : P; // trainable
  const b = DTYPE_BYTES[dtype];
  const mixed = dtype !== 'fp32';
  const shardOpt = zero >= 1 ? ranks : 1;

  let weights: number;
  let gradients: number;
  let optimizer: number;
  // The engine's bf16 weight storage (see the file comment): bf16 + ZeRO, full fine-tuning.
  const bf16Weights = layout === 'engine' && dtype === 'bf16' && zero >= 1 && !lora;
  let bucket = 0;
  if (bf16Weights) {
    weights = P * 2;
    gradients = P * 2 + (4 * P) / ranks;
    optimizer = (12 * P) / ranks;
    if (ranks > 1) {
      const align = 65_536; // the engine's gradient-norm block: shard sizes are multiples of it
      const shard = Math.ceil(P / (ranks * align)) * align;
      bucket = ranks * Math.min(shard, 1 << 22) * 4;
    }
  } else if (layout === 'engine') {
    // Frozen LoRA base in `dtype`; trainable values as fp32 flat parameters (+ a compute copy).
    weights = lora ? P * b + T * 4 + (mixed ? T * b : 0) : P * 4 + (mixed ? P * b : 0);
    // The engine's backward buffer, and stage 2's reduce-scattered shard beside it.
    gradients = T * 4 + (zero === 2 ? (4 * T) / ranks : 0);
    // Moments, and from stage 1 below fp32 the separate fp32 master slice.
    optimizer = ((zero >= 1 && mixed ? 12 : 8) * T) / shardOpt;
  } else {
    weights = P * b;
    gradients = (T * b) / (zero === 2 ? ranks : 1);
    optimizer = ((mixed ? 12 : 8) * T) / shardOpt;
  }

  const tokens = input.batch * input.cutoff;
  const perLayer = layerActivationElems(s) * tokens * b;
  const logits = tokens * s.vocab * 4;
  const layerActs = input.checkpointing ? s.layers * tokens * s.hidden * b + perLayer : s.layers * perLayer;
  const activations = layerActs + logits;
  const workspace = 4 * logits + bucket;
  const reserve = input.reserveGB * 1e9;
  const total = weights + gradients + optimizer + activations + workspace + reserve;
  const deviceBytes = input.deviceMemoryGB * 1e9;
  const { config: _c, ...rest } = input;
  return {
    model: { ...s, parameters: P, trainableParameters: T },
    input: rest,
    perRank: { weights, gradients, optimizer, activations, workspace, reserve, total },
    deviceBytes,
    fits: total <= deviceBytes,
  };
}

/** config.json of a model folder, or the file itself. */
export function readModelConfig(path: string): Record<string, unknown> {
  const file = statSync(path).isDirectory() ? join(path, 'config.json') : path;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: ${errorMessage(e)}`);
  }
}

const gb = (x: number) => `${(x / 1e9).toFixed(2)} GB`;

/** The human-readable table `mpo plan` prints. */
export function formatPlan(p: MemoryPlan): string {
  const i = p.input;
  const rows: [string, number][] = [
    ['weights', p.perRank.weights],
    ['gradients', p.perRank.gradients],
    ['optimizer', p.perRank.optimizer],
    ['activations', p.perRank.activations],
    ['workspace', p.perRank.workspace],
    ['reserve', p.perRank.reserve],
    ['total', p.perRank.total],
  ];
  const params = `${(p.model.parameters / 1e9).toFixed(3)} B parameters`;
  const trainable =
    p.model.trainableParameters === p.model.parameters
      ? ''
      : `, ${(p.model.trainableParameters / 1e6).toFixed(1)} M trainable (LoRA r=${i.lora})`;
  return [
    `${p.model.architecture}: ${params}${trainable}`,
    `${i.ranks} rank(s), ${i.dtype}, ZeRO-${i.zero}, ${i.checkpointing ? 'activation checkpointing, ' : ''}batch ${i.batch} x ${i.cutoff} tokens, layout ${i.layout}`,
    'per rank:',
    ...rows.map(([k, v]) => `  ${k.padEnd(12)} ${gb(v).padStart(12)}`),
    `${p.fits ? 'fits' : 'does NOT fit'} in ${gb(p.deviceBytes)} of device memory`,
  ].join('\n');
}
