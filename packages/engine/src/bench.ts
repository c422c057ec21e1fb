// The engine benchmark ("config S" of issue 3): one MPO-shaped training step per measurement =
// forward+backward of 2 target sequences through the LM head and 2 source sequences to the final
// hidden state (mean pooled) per pair, then AdamW. Same shapes as bench/reference/torch_mpo_step.py.
import type { LlamaConfig } from './config.js';
import { type Device, type Dtype, Model } from './model.js';
import { native } from './native.js';

export const CONFIG_S: LlamaConfig = {
  architecture: 'LlamaForCausalLM',
  vocabSize: 512,
  hiddenSize: 256,
  intermediateSize: 688,
  numHiddenLayers: 4,
  numAttentionHeads: 4,
  numKeyValueHeads: 4,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  attentionBias: false,
  tieWordEmbeddings: false,
  maxPositionEmbeddings: 512,
};

/** The command-line options `mpo bench engine` and bench-cli.ts share (node:util parseArgs specs, with defaults). */
export const BENCH_ARG_OPTIONS = {
  pairs: { type: 'string', default: '8' },
  threads: { type: 'string', default: '2' },
  steps: { type: 'string', default: '5' },
  dtype: { type: 'string', default: 'float32' },
  device: { type: 'string', default: 'cpu' },
  json: { type: 'boolean', default: false },
} as const;

/** This machine's measured fp32 sgemm ceiling (issue 3), the MFU denominator. */
export const PEAK_FLOPS = 440e9;

export interface BenchOptions {
  pairs?: number;
  threads?: number;
  /** Measured steps (after one warm-up step). */
  steps?: number;
  dtype?: Dtype;
  device?: Device;
  seqLen?: number;
  /** FLOP/s that MFU is relative to (default PEAK_FLOPS). */
  peakFlops?: number;
  /** Activation checkpointing per decoder layer (Model.setActivationCheckpointing). */
  activationCheckpointing?: boolean;
  /** Also measure this machine's GEMM rate on the step's own shapes, in the same process (CPU). */
  gemmRate?: boolean;
}

export interface BenchResult {
  tokensPerSec: number;
  mfu: number;
  secondsPerStep: number;
  /** every measured step, seconds */
  stepSeconds: number[];
  pairs: number;
  threads: number;
  steps: number;
  dtype: Dtype;
  device: Device;
  seqLen: number;
  numParameters: number;
  tokensPerStep: number;
  activationCheckpointing: boolean;
  /** Peak resident set of this process (getrusage maxrss) after the model was built, before any step. */
  rssBeforeStepsBytes: number;
  /** ... and after the steps: the difference is the training step's peak working memory. */
  peakRssBytes: number;
  /**
   * With gemmRate: FLOP/s of the GEMMs the step makes (every linear layer's forward x W^T, backward
   * dy W and dy^T x at the step's chunk size), on `threads` threads at once, fp32 sgemm and (when
   * present) the bf16 GEMM, measured right after the steps; and the step's FLOP/s (the MFU formula's
   * numerator) as a fraction of the sgemm rate.
   */
  sgemmFlops?: number;
  bf16GemmFlops?: number;
  fractionOfSgemm?: number;
  /** ... as a fraction of the rate of the GEMM this dtype runs on (bf16 GEMM for mixed bf16). */
  fractionOfOwnGemm?: number;
}

/**
 * Aggregate rate of the step's linear-layer GEMMs: total FLOPs over total time, each shape run for
 * `seconds` on `threads` threads at once (as the engine's chunk workers run).
 */
export function stepGemmRate(rows: number, threads: number, bf16: boolean, seconds = 0.25): number {
  const D = CONFIG_S.hiddenSize;
  const I = CONFIG_S.intermediateSize;
  const layers: [number, number][] = [
    [3 * D, D], // q/k/v (fused)
    [D, D], // o_proj
    [2 * I, D], // gate/up (fused)
    [D, I], // down_proj
    [CONFIG_S.vocabSize, D], // LM head
  ];
  let flops = 0;
  let time = 0;
  const run = (m: number, n: number, k: number, transA: boolean, transB: boolean) => {
    const f = 2 * m * n * k;
    const rate = native().gemmRate({ bf16, threads, m, n, k, transA, transB, seconds });
    flops += f;
    time += f / rate;
  };
  for (const [out, inp] of layers) {
    run(rows, out, inp, false, true); // y = x W^T
    run(rows, inp, out, false, false); // dx = dy W
    run(out, inp, rows, true, false); // dW = dy^T x
  }
  return flops / time;
}

const maxRssBytes = () => process.resourceUsage().maxRSS * 1024;

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function benchEngine(opts: BenchOptions = {}): Promise<BenchResult> {
  // Long: a benchmark: the model and batch, a warm-up, the timed training steps, then the figures it reports.
  const pairs = opts.pairs ?? 8;
  const threads = opts.threads ?? 2;
  const steps = opts.steps ?? 5;
  const dtype = opts.dtype ?? 'float32';
  const device = opts.device ?? 'cpu';
  const T = opts.seqLen ?? 256;
  const V = CONFIG_S.vocabSize;
  const D = CONFIG_S.hiddenSize;
  const activationCheckpointing = opts.activationCheckpointing ?? false;
  const model = Model.init(CONFIG_S, { seed: 0, threads, dtype, device, activationCheckpointing });
  try {
    const r = rng(1);
    const batch = () =>
      Array.from({ length: 2 * pairs }, () => Array.from({ length: T }, () => Math.floor(r() * V)));
    const target = batch();
    const source = batch();
    const promptLengths = target.map(() => T / 4); // response = last 3/4, as the peer
    const gLogp = Float64Array.from({ length: 2 * pairs }, () => r() - 0.5);
    const gHidden = Float32Array.from({ length: 2 * pairs * D }, () => (r() - 0.5) * 1e-2);

    const step = async () => {
      model.zeroGrad();
      const t = await model.score({ sequences: target, promptLengths }, { grad: true });
      await model.backward(t.handle!, { sumLogp: gLogp });
      const s = await model.score(
        { sequences: source, promptLengths },
        { grad: true, lmHead: false, pooling: ['mean'] },
      );
      await model.backward(s.handle!, { meanHidden: gHidden });
      await model.step({ lr: 1e-5 });
    };
    const rssBeforeStepsBytes = maxRssBytes();
    await step(); // warm-up: allocator, RoPE tables, thread pools
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = process.hrtime.bigint();
      await step();
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const sec = median(times);
    const tokens = 4 * pairs * T;
    // 6 * parameters * tokens, the same approximation as the PyTorch peer (attention not counted).
    const flops = 6 * model.numParameters * tokens;
    const peakRssBytes = maxRssBytes();
    let gemm: Pick<BenchResult, 'sgemmFlops' | 'bf16GemmFlops' | 'fractionOfSgemm' | 'fractionOfOwnGemm'> =
      {};
    if (opts.gemmRate && device === 'cpu') {
      // The rows of one chunk: a batch of 2*pairs sequences is cut into one chunk per thread.
      const rows = Math.ceil((2 * pairs) / threads) * T;
      const sgemmFlops = stepGemmRate(rows, threads, false);
      gemm = {
        sgemmFlops,
        fractionOfSgemm: flops / sec / sgemmFlops,
        fractionOfOwnGemm: flops / sec / sgemmFlops,
      };
      if (native().features.bf16Gemm) {
        const bf16GemmFlops = stepGemmRate(rows, threads, true);
        gemm.bf16GemmFlops = bf16GemmFlops;
        if (dtype === 'bfloat16') gemm.fractionOfOwnGemm = flops / sec / bf16GemmFlops;
      }
    }
    return {
      tokensPerSec: tokens / sec,
      mfu: flops / sec / (opts.peakFlops ?? PEAK_FLOPS),
      secondsPerStep: sec,
      stepSeconds: times,
      pairs,
      threads,
      steps,
      dtype,
      device,
      seqLen: T,
      numParameters: model.numParameters,
      tokensPerStep: tokens,
      activationCheckpointing,
      rssBeforeStepsBytes,
      peakRssBytes,
      ...gemm,
    };
  } finally {
    model.dispose();
  }
}
