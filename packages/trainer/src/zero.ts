// ZeRO stages 1 and 2 (Rajbhandari et al., 2020) over the data-parallel group.
//
// Each of N ranks owns one contiguous slice of the flat parameters (`shardRange`, aligned to the
// engine's gradient-norm blocks) and keeps, for that slice only, the fp32 master weights and AdamW's
// two moments (stage 1), and from stage 2 also the summed gradient. Per step:
//   stage 1: all-reduce the whole gradient (the engine's buffer), use my slice of it (with bf16
//            weight storage: per micro-batch and bucket, as stage 2 does; see below);
//   stage 2: after every micro-batch, reduce-scatter the engine's gradient and add my slice into my
//            gradient shard (`gradShard`, 1/N): the full gradient exists only in the engine's own
//            backward buffer, for one micro-batch at a time;
//   both:    global norm = sqrt(sum over blocks, in block order, of the blocks' sums of squares),
//            the partials of all ranks' blocks exchanged by all-gather; AdamW on my master slice with
//            the engine's kernel; all-gather the updated slices into every rank's forward weights.
// The shard collectives sum in rank order as the all-reduce does, and the norm is added in the
// engine's block order, so a ZeRO run reproduces the unsharded data-parallel run bit for bit when the
// gradient sums have the same order: always at stage 1, and at stage 2 with one micro-batch per rank
// per step (with k > 1, stage 2 sums (rank sums) over micro-batches instead of (micro-batch sums)
// over ranks, which agrees to rounding).
//
// What the sharded master is depends on the compute dtype:
//   float32:  the model's weights ARE the fp32 master weights and every rank needs all of them for
//             its forward pass, so the master slice is a view of the engine's flat parameters: no
//             second copy exists, and sharding means that each rank updates (and checkpoints the
//             optimizer state of) only its slice and receives the others' by all-gather.
//   bfloat16: mixed precision as ZeRO/DeepSpeed do it: the fp32 master is a separate 1/N array on
//             its owner, updated there, rounded to nearest-even bf16 and all-gathered, so after every
//             update the forward weights on every rank are bf16 values. The master slices go into
//             the checkpoint beside the moments, so a resume continues from the fp32 masters, not
//             from the bf16 weights. On the CPU the trainer loads the model with the engine's bf16
//             weight storage (run.ts): the engine then holds the weights and the gradient in bf16
//             only (2 + 2 bytes per parameter, no fp32 copy of the model), the all-gather moves bf16
//             bits, and the gradient is drained after every micro-batch, at both stages, into the
//             fp32 shard (`gradShard`) by bucketed collectives that widen one bucket of bf16
//             gradients to fp32 at a time (reduce-scatter at stage 2, all-reduce at stage 1): a bf16
//             buffer cannot accumulate micro-batches to fp32 precision, and the full fp32 gradient
//             is never formed. Unsharded (stage 0) bf16 runs differ: their forward weights are fp32
//             masters themselves (norms and embeddings read them unrounded), so ZeRO's bf16 runs are
//             compared with one rank of ZeRO (whose single slice is the whole unsharded master).
//
// Checkpoints: each rank writes `optimizer-rank-0000r-of-0000N.safetensors` (its moments and, for
// bf16, its master slice), rank 0 adds `zero-manifest.json` (who owns which range, the step).
// Loading reads whichever files overlap the new owner's range, so a run resumes on any rank count; a
// full `optimizer.bin` of an unsharded run loads the same way (one shard covering everything; its
// masters are the weights).
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { shardRange } from '@mpo/allreduce';
import { adamwShard, buildHeader, normBlock, readSafetensorsHeader, sumSquaresBlocks } from '@mpo/engine';
import type { Communicator } from './types.js';

export const ZERO_STAGES = [0, 1, 2] as const;
export type ZeroStage = (typeof ZERO_STAGES)[number];
export const ZERO_MANIFEST = 'zero-manifest.json';
const FULL_OPTIMIZER = 'optimizer.bin';
/** Shard-file tensor of the fp32 master weights (bf16 runs). */
const MASTER = 'master';

/** What ZeRO needs beyond the all-reduce: the two shard collectives of @mpo/allreduce. */
export interface ShardCommunicator extends Communicator {
  reduceScatterSum(buf: Float32Array, align: number): Promise<void>;
  allGather(buf: Float32Array, align: number): Promise<void>;
}

export interface ZeroModel {
  paramBuffer(): Float32Array;
  gradBuffer(): Float32Array;
  syncParams(): void;
  /** Compute dtype (engine Model.dtype): 'bfloat16' gets a separate, sharded fp32 master. */
  readonly dtype?: string;
  /** Engine weight storage: 'bfloat16' keeps weights and gradients in bf16 only (paramBits/gradBits). */
  readonly weightStorage?: string;
  paramBits?(): Uint16Array;
  gradBits?(): Uint16Array;
}

/** Elements per gradient bucket (bf16 weight storage): a multiple of every shard alignment. */
export const GRAD_BUCKET = 1 << 22;

export interface ZeroStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
}

export interface ZeroManifest {
  version: 1;
  format: 'mpo-zero-adamw';
  stage: 1 | 2;
  worldSize: number;
  numParameters: number;
  /** Shard sizes are multiples of this (the engine's gradient-norm block). */
  align: number;
  /** The shard files also hold `master` (fp32 master weights of the range; bf16 runs). */
  master?: boolean;
  /** AdamW steps taken (bias-correction count). */
  step: number;
  shards: { rank: number; file: string; start: number; end: number }[];
}

export const shardFileName = (rank: number, world: number) =>
  `optimizer-rank-${String(rank).padStart(5, '0')}-of-${String(world).padStart(5, '0')}.safetensors`;

export function isShardCommunicator(c: Communicator | undefined): c is ShardCommunicator {
  const s = c as Partial<ShardCommunicator> | undefined;
  return typeof s?.reduceScatterSum === 'function' && typeof s.allGather === 'function';
}

/** Bytes a ZeRO rank holds for its share of the training state (the engine's buffers apart). */
export interface ZeroHeldBytes {
  /** Separate fp32 master slice (0 under fp32: the master is the forward weights). */
  master: number;
  /** AdamW's two moments of my slice. */
  moments: number;
  /** Stage 2's summed-gradient shard (0 at stage 1, which reads the engine's all-reduced buffer). */
  gradients: number;
}

export class ZeroOptimizer {
  readonly start: number;
  readonly end: number;
  readonly align = normBlock();
  readonly rank: number;
  readonly worldSize: number;
  /** AdamW moments of my slice. */
  m: Float32Array;
  v: Float32Array;
  /** bf16 compute: my slice's fp32 master weights (the forward weights are their bf16 rounding). */
  readonly ownMaster: Float32Array | null;
  /** Stage 2 (and both stages with bf16 weights): my slice of the gradient summed over ranks and micro-batches. */
  readonly gradShard: Float32Array | null;
  /** The engine stores weights and gradients in bf16 only (ZeroModel.weightStorage). */
  readonly bf16Weights: boolean;
  private readonly n: number;
  /** Bucket of the bf16-weight collectives (worldSize x bucket elements), allocated on first use. */
  private bucket: Float32Array | null = null;
  step = 0;

  constructor(
    private readonly model: ZeroModel,
    private readonly comm: ShardCommunicator | undefined,
    readonly stage: 1 | 2,
    private readonly threads = 1,
    /** Elements per gradient bucket of a rank's shard (bf16 weights); a multiple of the norm block. */
    private readonly bucketElems = GRAD_BUCKET,
  ) {
    this.rank = comm?.rank ?? 0;
    this.worldSize = comm?.worldSize ?? 1;
    if (model.dtype === 'float16')
      throw new Error('ZeRO with float16 compute is not supported (use bfloat16 or float32)');
    this.bf16Weights = model.weightStorage === 'bfloat16';
    if (this.bf16Weights && (model.dtype !== 'bfloat16' || !model.paramBits || !model.gradBits))
      throw new Error('ZeRO: bf16 weight storage needs a bfloat16 model with paramBits()/gradBits()');
    if (!Number.isInteger(bucketElems / this.align) || bucketElems <= 0)
      throw new Error(`ZeRO: the gradient bucket must be a positive multiple of ${this.align} elements`);
    const n = this.bf16Weights ? model.paramBits!().length : model.paramBuffer().length;
    this.n = n;
    ({ start: this.start, end: this.end } = shardRange(n, this.rank, this.worldSize, this.align));
    const len = this.end - this.start;
    this.m = new Float32Array(len);
    this.v = new Float32Array(len);
    this.gradShard = stage === 2 || this.bf16Weights ? new Float32Array(len) : null;
    // The master starts as the weights loaded. They are not rounded here: the reference scores were
    // taken with them, and the policy must start equal to its reference; every update then writes
    // the bf16 rounding (a bf16 checkpoint or Hugging Face folder is bf16-valued already). With bf16
    // weight storage the weights loaded are bf16 values already (the engine rounded them).
    if (this.bf16Weights) {
      this.ownMaster = new Float32Array(len);
      widenBf16(model.paramBits!().subarray(this.start, this.end), this.ownMaster);
    } else {
      this.ownMaster = model.dtype === 'bfloat16' ? Float32Array.from(this.slice(model.paramBuffer())) : null;
    }
  }

  get numParameters(): number {
    return this.n;
  }

  private slice(x: Float32Array): Float32Array {
    return x.subarray(this.start, this.end);
  }

  /** The fp32 master weights of my slice: my own array (bf16) or the engine's weights (fp32). */
  master(): Float32Array {
    return this.ownMaster ?? this.slice(this.model.paramBuffer());
  }

  /** The summed gradient of my slice: stage 2's shard, or my part of the all-reduced engine buffer. */
  grads(): Float32Array {
    return this.gradShard ?? this.slice(this.model.gradBuffer());
  }

  /** What this rank holds for the sharded state, in bytes (each term ~1/N of the unsharded one). */
  heldBytes(): ZeroHeldBytes {
    return {
      master: this.ownMaster?.byteLength ?? 0,
      moments: this.m.byteLength + this.v.byteLength,
      gradients: this.gradShard?.byteLength ?? 0,
    };
  }

  /** Stage 1: sums the ranks' whole gradients in the engine's buffer. */
  async reduceGradients(): Promise<{ bytes: number }> {
    if (this.stage === 2) throw new Error('ZeRO-2 reduces each micro-batch with accumulateShard()');
    if (this.bf16Weights)
      throw new Error('ZeRO with bf16 weights reduces each micro-batch with accumulateShard()');
    const g = this.model.gradBuffer();
    if (!this.comm || this.worldSize === 1) return { bytes: 0 };
    await this.comm.allReduceSum(g);
    return { bytes: g.byteLength };
  }

  /**
   * Stage 2, after each micro-batch's backward: reduce-scatter the engine's gradient and add my slice
   * into the shard (`first`: the step's first micro-batch, which sets it). Every rank must call it
   * the same number of times (a rank without a micro-batch contributes its zeroed buffer). The
   * caller zeroes the engine's gradient afterwards.
   */
  async accumulateShard(first: boolean): Promise<{ bytes: number }> {
    const shard = this.gradShard;
    if (!shard) throw new Error('accumulateShard is ZeRO-2 only');
    if (this.bf16Weights) return this.drainBf16(shard, first);
    const g = this.model.gradBuffer();
    if (this.comm && this.worldSize > 1) await this.comm.reduceScatterSum(g, this.align);
    const mine = this.slice(g);
    if (first) shard.set(mine);
    else for (let i = 0; i < shard.length; i++) shard[i]! += mine[i]!;
    return { bytes: this.comm && this.worldSize > 1 ? g.byteLength : 0 };
  }

  /**
   * bf16 weight storage: my slice of the ranks' summed bf16 gradients, widened to fp32, into the
   * shard. Bucket k holds, for every rank r in rank order, elements [k B, (k+1) B) of r's shard
   * (zeros past its end), so one reduce-scatter with alignment B hands each rank its own piece:
   * the sums run in rank order over fp32 values, as the fp32 path's reduce-scatter does. Stage 1
   * all-reduces the bucket instead (every rank receives the full sums; it keeps its piece).
   */
  private async drainBf16(shard: Float32Array, first: boolean): Promise<{ bytes: number }> {
    const g16 = this.model.gradBits!();
    const len = this.end - this.start;
    const add = (k: number, v: number) => {
      shard[k] = first ? v : shard[k]! + v;
    };
    const word = new Uint32Array(1);
    const f = new Float32Array(word.buffer);
    if (!this.comm || this.worldSize === 1) {
      for (let k = 0; k < len; k++) {
        word[0] = g16[this.start + k]! << 16;
        add(k, f[0]!);
      }
      return { bytes: 0 };
    }
    const N = this.worldSize;
    const S = Math.ceil(this.n / (N * this.align)) * this.align; // nominal shard size (shardRange)
    const B = Math.min(S, this.bucketElems);
    this.bucket ??= new Float32Array(N * B);
    const buf = this.bucket;
    const bits = new Uint32Array(buf.buffer, buf.byteOffset, buf.length);
    let bytes = 0;
    for (let o = 0; o < S; o += B) {
      for (let r = 0; r < N; r++) {
        const end = Math.min(this.n, (r + 1) * S);
        for (let j = 0; j < B; j++) {
          const idx = r * S + o + j;
          bits[r * B + j] = o + j < S && idx < end ? g16[idx]! << 16 : 0;
        }
      }
      if (this.stage === 2)
        await this.comm.reduceScatterSum(buf, this.align); // B is a multiple: rank r gets [r B, (r+1) B)
      else await this.comm.allReduceSum(buf);
      // The loop's bus bandwidth counts bytes as a reduce-scatter moves them; an all-reduce moves twice that.
      bytes += buf.byteLength * (this.stage === 2 ? 1 : 2);
      const mine = this.rank * B;
      for (let j = 0; j < B && o + j < len; j++) add(o + j, buf[mine + j]!);
    }
    return { bytes };
  }

  /** The global gradient norm, added exactly as the engine adds it (blocks in order, in double). */
  async gradNorm(): Promise<number> {
    const mine = sumSquaresBlocks(this.grads(), this.threads);
    const all = new Float64Array(Math.ceil(this.numParameters / this.align));
    all.set(mine, this.start / this.align);
    // The doubles travel as pairs of float32 words: all-gather only copies, so the bits survive,
    // and block b's partial lies in the shard (of 2 words per block) of the rank owning block b.
    if (this.comm && this.worldSize > 1) await this.comm.allGather(new Float32Array(all.buffer), 2);
    let s = 0;
    for (const p of all) s += p;
    return Math.sqrt(s);
  }

  /** AdamW on my master slice, then every rank gets every slice. Returns the pre-clip norm; a non-finite one skips. */
  async stepShard(o: ZeroStepOptions): Promise<{ gradNorm: number }> {
    const norm = await this.gradNorm();
    if (!Number.isFinite(norm)) return { gradNorm: norm };
    // torch.nn.utils.clip_grad_norm_'s coefficient, as the engine applies it.
    const clip = o.maxGradNorm > 0 && norm > o.maxGradNorm ? o.maxGradNorm / (norm + 1e-6) : 1;
    this.step += 1;
    adamwShard(
      { p: this.master(), g: this.grads(), m: this.m, v: this.v },
      { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay },
      this.step,
      clip,
      this.threads,
    );
    // bf16: my slice of the forward weights = round-to-nearest-even(master), as torch converts.
    if (this.bf16Weights) {
      // bf16 storage: the bits go straight into the engine's weights, and the all-gather moves
      // them as 32-bit words (two per word; shards are whole words since the alignment is even).
      const bits = this.model.paramBits!();
      roundToBf16Bits(this.ownMaster!, bits.subarray(this.start, this.end));
      if (this.comm && this.worldSize > 1)
        await this.comm.allGather(
          new Float32Array(bits.buffer, bits.byteOffset, Math.ceil(this.n / 2)),
          this.align / 2,
        );
    } else {
      if (this.ownMaster) roundToBf16(this.ownMaster, this.slice(this.model.paramBuffer()));
      if (this.comm && this.worldSize > 1) await this.comm.allGather(this.model.paramBuffer(), this.align);
    }
    this.model.syncParams();
    return { gradNorm: norm };
  }

  /** The arrays a shard file holds, by tensor name: the moments, and the master slice if separate. */
  private shardTensors(): [string, Float32Array][] {
    const t: [string, Float32Array][] = [
      ['exp_avg', this.m],
      ['exp_avg_sq', this.v],
    ];
    if (this.ownMaster) t.push([MASTER, this.ownMaster]);
    return t;
  }

  /** Writes my moments (and master slice) to `dir/optimizer-rank-…safetensors` (atomically: temp file, then rename). */
  async saveShard(dir: string): Promise<string> {
    await mkdir(dir, { recursive: true });
    const len = this.end - this.start;
    const file = shardFileName(this.rank, this.worldSize);
    const tensors = this.shardTensors();
    const header = buildHeader(
      tensors.map(([name]) => ({ name, dtype: 'F32', shape: [len] })),
      {
        format: 'mpo-zero-adamw',
        start: String(this.start),
        end: String(this.end),
        numParameters: String(this.numParameters),
        step: String(this.step),
      },
    );
    const tmp = join(dir, `${file}.tmp`);
    const fd = openSync(tmp, 'w');
    try {
      const lenLe = Buffer.alloc(8);
      lenLe.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
      writeSync(fd, lenLe);
      writeSync(fd, Buffer.from(header, 'utf8'));
      for (const [, a] of tensors) writeAll(fd, a);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, file));
    return file;
  }

  /** Rank 0: moves the ranks' shard files from `staging` into the checkpoint folder and lists them. */
  async finishCheckpoint(staging: string, dir: string): Promise<ZeroManifest> {
    const shards = Array.from({ length: this.worldSize }, (_, r) => ({
      rank: r,
      file: shardFileName(r, this.worldSize),
      ...shardRange(this.numParameters, r, this.worldSize, this.align),
    }));
    for (const s of shards) await rename(join(staging, s.file), join(dir, s.file));
    const manifest: ZeroManifest = {
      version: 1,
      format: 'mpo-zero-adamw',
      stage: this.stage,
      worldSize: this.worldSize,
      numParameters: this.numParameters,
      align: this.align,
      step: this.step,
      ...(this.ownMaster ? { master: true } : {}),
      shards,
    };
    await writeFile(join(dir, ZERO_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    if ((await readdir(staging)).length === 0) await rm(staging, { recursive: true, force: true });
    return manifest;
  }

  /**
   * Loads my slice of the moments (and, for bf16, of the fp32 masters) from a checkpoint folder
   * written with any rank count (its manifest), or from an unsharded run's optimizer.bin. Files
   * without masters (fp32 runs, optimizer.bin) leave the master slice as the weights give it.
   */
  async load(dir: string): Promise<void> {
    const sources = await optimizerSources(dir, this.numParameters);
    const targets: [Float32Array, string][] = [
      [this.m, 'exp_avg'],
      [this.v, 'exp_avg_sq'],
    ];
    if (this.ownMaster && sources.every((s) => s.tensors.has(MASTER))) targets.push([this.ownMaster, MASTER]);
    for (const [target, name] of targets) {
      for (const s of sources) {
        const a = Math.max(this.start, s.start);
        const b = Math.min(this.end, s.end);
        if (a >= b) continue;
        const t = s.tensors.get(name)!;
        readInto(s.path, t.fileOffset + (a - s.start) * 4, target.subarray(a - this.start, b - this.start));
      }
    }
    this.step = sources[0]!.step;
  }
}

interface OptimizerSource {
  path: string;
  start: number;
  end: number;
  step: number;
  tensors: Map<string, { fileOffset: number; shape: number[]; dtype: string }>;
}

/** The files holding a checkpoint's AdamW moments and the parameter range each covers. */
async function optimizerSources(dir: string, numParameters: number): Promise<OptimizerSource[]> {
  const manifestPath = join(dir, ZERO_MANIFEST);
  const entries: { path: string; start: number; end: number }[] = [];
  let step: number;
  if (existsSync(manifestPath)) {
    const mf = JSON.parse(readFileSync(manifestPath, 'utf8')) as ZeroManifest;
    if (mf.format !== 'mpo-zero-adamw' || !Array.isArray(mf.shards))
      throw new Error(`${manifestPath}: not a ZeRO optimizer manifest`);
    if (mf.numParameters !== numParameters)
      throw new Error(`${manifestPath}: ${mf.numParameters} parameters, the model has ${numParameters}`);
    step = mf.step;
    for (const s of mf.shards) entries.push({ path: join(dir, s.file), start: s.start, end: s.end });
    const covered = [...entries]
      .sort((x, y) => x.start - y.start)
      .reduce((at, e) => (e.start === at ? e.end : at), 0);
    if (covered !== numParameters)
      throw new Error(`${manifestPath}: shards do not cover [0, ${numParameters})`);
  } else if (existsSync(join(dir, FULL_OPTIMIZER))) {
    entries.push({ path: join(dir, FULL_OPTIMIZER), start: 0, end: numParameters });
    step = Number.NaN;
  } else {
    throw new Error(`${dir}: no optimizer state (${ZERO_MANIFEST} or ${FULL_OPTIMIZER})`);
  }
  const out: OptimizerSource[] = [];
  for (const e of entries) {
    const st = await readSafetensorsHeader(e.path);
    for (const name of ['exp_avg', 'exp_avg_sq', MASTER]) {
      const t = st.tensors.get(name);
      if (name === MASTER && !t) continue;
      if (t?.dtype !== 'F32' || t.shape.length !== 1 || t.shape[0] !== e.end - e.start)
        throw new Error(`${e.path}: ${name} is missing or not F32 [${e.end - e.start}]`);
    }
    const s = Number.isNaN(step) ? Number(st.metadata.step) : step;
    if (!Number.isInteger(s) || s < 0) throw new Error(`${e.path}: bad step count ${st.metadata.step}`);
    out.push({ ...e, step: s, tensors: st.tensors });
  }
  return out;
}

function writeAll(fd: number, a: Float32Array): void {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let off = 0; off < bytes.length; )
    off += writeSync(fd, bytes, off, Math.min(1 << 30, bytes.length - off));
}

function readInto(path: string, position: number, dst: Float32Array): void {
  const bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
  const fd = openSync(path, 'r');
  try {
    for (let off = 0; off < bytes.length; ) {
      const n = readSync(fd, bytes, off, Math.min(1 << 30, bytes.length - off), position + off);
      if (n <= 0) throw new Error(`${path}: file ends before the optimizer state does`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * dst = src rounded to the nearest bf16 (ties to even), kept in fp32 words: c10::BFloat16's
 * round_to_nearest_even, (u + 0x7fff + ((u >> 16) & 1)) >> 16, with NaN as the quiet 0x7fc0.
 * dst may be src.
 */
export function roundToBf16(src: Float32Array, dst: Float32Array): void {
  if (src.length !== dst.length) throw new Error('roundToBf16: lengths differ');
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < s.length; i++) {
    const u = s[i]!;
    d[i] = (u & 0x7fffffff) > 0x7f800000 ? 0x7fc00000 : ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
}

/** dst = src rounded to the nearest bf16 (as roundToBf16), as bf16 bits. */
export function roundToBf16Bits(src: Float32Array, dst: Uint16Array): void {
  if (src.length !== dst.length) throw new Error('roundToBf16Bits: lengths differ');
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) {
    const u = s[i]!;
    dst[i] = (u & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

/** dst = the fp32 values of the bf16 bits in src (exact). */
export function widenBf16(src: Uint16Array, dst: Float32Array): void {
  if (src.length !== dst.length) throw new Error('widenBf16: lengths differ');
  const d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) d[i] = src[i]! << 16;
}
