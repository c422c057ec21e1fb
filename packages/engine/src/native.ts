// Loads the compiled addon (build/Release/mpo_engine.node). This file sits one level below the
// package root both as src/native.ts (vitest) and as dist/native.js, so one relative path serves both.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { StepOptions } from './model.js';

export interface NativeConfig {
  arch: 'llama' | 'qwen2' | 'gemma2';
  vocab: number;
  hidden: number;
  inter: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  theta: number;
  bias: boolean;
  tie: boolean;
  padId: number;
  llama3: {
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  } | null;
  /** Gemma-2 (0 / false elsewhere): GeGLU, query_pre_attn_scalar, soft-capping, sliding window. */
  geluTanh: boolean;
  queryScalar: number;
  attnSoftcap: number;
  finalSoftcap: number;
  slidingWindow: number;
}

export interface NativeTensorInfo {
  name: string;
  shape: number[];
  offset: number;
  numel: number;
}

export type NativeBufferName = 'param' | 'exp_avg' | 'exp_avg_sq';

export interface NativeReadEntry {
  file: string;
  dtype: string;
  fileOffset: number;
  nbytes: number;
  target: NativeBufferName;
  offset: number;
  numel: number;
}

export interface NativeWriteEntry {
  source: NativeBufferName;
  offset: number;
  numel: number;
  dtype: string;
}

export interface NativeScoreResult {
  n: number;
  hiddenSize: number;
  handle?: number;
  tokens: Int32Array;
  sumLogp?: Float64Array;
  kl?: Float64Array;
  lastHidden?: Float32Array;
  meanHidden?: Float32Array;
  meanUnmaskedHidden?: Float32Array;
}

export interface NativeModel {
  tensorTable(): NativeTensorInfo[];
  numParameters(): number;
  initRandom(seed: number, std: number): void;
  readTensors(entries: NativeReadEntry[]): Promise<void>;
  writeSafetensors(path: string, header: string, entries: NativeWriteEntry[]): Promise<void>;
  score(
    tokens: Int32Array,
    offsets: Float64Array,
    promptLens: Float64Array,
    opts: {
      grad: boolean;
      lmHead: boolean;
      last: boolean;
      mean: boolean;
      meanUnmasked: boolean;
      reference?: NativeModel;
      adapters?: boolean;
    },
  ): Promise<NativeScoreResult>;
  backward(
    handle: number,
    grads: {
      sumLogp?: Float64Array;
      kl?: Float64Array;
      lastHidden?: Float32Array;
      meanHidden?: Float32Array;
      meanUnmaskedHidden?: Float32Array;
    },
  ): Promise<void>;
  release(handle: number): void;
  zeroGrad(): void;
  gradBuffer(): Float32Array;
  paramBuffer(): Float32Array;
  paramBits(): Uint16Array;
  gradBits(): Uint16Array;
  syncParams(): void;
  step(opts: StepOptions): Promise<number>;
  gradNorm(): number;
  optimizerStep(): number;
  setOptimizerStep(n: number): void;
  hasOptimizerState(): boolean;
  generate(
    tokens: Int32Array,
    offsets: Float64Array,
    opts: {
      maxNewTokens: number;
      eos: Int32Array;
      temperature: number;
      topP: number;
      seed: number;
      kvCache: boolean;
    },
  ): Promise<Int32Array[]>;
  logits(tokens: Int32Array): Promise<Float32Array>;
  setCheckpointing(on: boolean): void;
  setThreads(n: number): void;
  dispose(): void;
  enableLora(opts: { rank: number; alpha: number; dropout: number; targets: string[]; seed: number }): void;
  loraMergeInto(target: NativeModel): void;
  setAdapterStep(step: number): void;
}

export interface NativeAddon {
  NativeModel: new (
    config: NativeConfig,
    device: string,
    dtype: string,
    threads: number,
    bf16Weights?: boolean,
  ) => NativeModel;
  torchVersion: string;
  cudaBuild: boolean;
  cudaDevices: number;
  features: {
    openblasThreadsSet: boolean;
    blockedAttention: boolean;
    mallocTuned: boolean;
    gemm: string;
    /** oneDNN's bf16 GEMM is there: bfloat16 models on the CPU run mixed precision on it. */
    bf16Gemm: boolean;
  };
  /** GEMM throughput in FLOP/s on this machine (blocks the calling thread; for benchmarks). */
  gemmRate(opts: {
    bf16: boolean;
    threads: number;
    m: number;
    n: number;
    k: number;
    transA: boolean;
    transB: boolean;
    seconds: number;
  }): number;
  sumSquaresBlocks(g: Float32Array, threads: number): Float64Array;
  adamwShard(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    opts: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number },
    step: number,
    clip: number,
    threads: number,
  ): void;
  normBlock: number;
}

/** What the loaded addon was built with / found at load time (cudaDevices: CUDA devices it sees now). */
export function engineInfo(): {
  torchVersion: string;
  cudaBuild: boolean;
  cudaDevices: number;
} & NativeAddon['features'] {
  const a = native();
  return { torchVersion: a.torchVersion, cudaBuild: a.cudaBuild, cudaDevices: a.cudaDevices, ...a.features };
}

const addonPath = fileURLToPath(new URL('../build/Release/mpo_engine.node', import.meta.url));
let cached: NativeAddon | undefined;

/** The addon, loaded on first use. MPO_ENGINE_ADDON overrides the path of the .node file. */
export function native(): NativeAddon {
  if (cached) return cached;
  const path = process.env.MPO_ENGINE_ADDON ?? addonPath;
  if (!existsSync(path)) {
    throw new Error(
      `@mpo/engine: native addon not built (${path} is missing); run \`npm run build -w @mpo/engine\` ` +
        '(needs Debian libtorch-dev and libopenblas0-pthread, or LIBTORCH=<libtorch dir>)',
    );
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeAddon;
  return cached;
}
