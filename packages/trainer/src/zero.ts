// ZeRO stages 1 and 2 (Rajbhandari et al., 2020) over the data-parallel group.
//
// Each of N ranks owns one contiguous slice of the flat parameters (`shardRange`, aligned to the
// engine's gradient-norm blocks) and keeps AdamW's two moments only for that slice: 8 bytes per
// parameter per rank become 8/N. Per step:
//   stage 1: all-reduce the whole gradient, use my slice;
//   stage 2: reduce-scatter, so I receive only my slice of the summed gradient;
//   both:    global norm = sqrt(sum over blocks, in block order, of the blocks' sums of squares),
//            the partials of all ranks' blocks exchanged by all-gather; AdamW on my slice with the
//            engine's kernel; all-gather the updated slices into every rank's parameters.
// The shard collectives sum in rank order as the all-reduce does, and the norm is added in the
// engine's block order, so a ZeRO run reproduces the unsharded data-parallel run bit for bit.
//
// The engine's fp32 flat parameters are also its forward weights, so every rank still holds them
// whole; the master slice a rank updates is its part of them. Gradients, too, land in the engine's
// full flat buffer during backward: stage 2 saves traffic and the receive side, not that buffer.
//
// Checkpoints: each rank writes `optimizer-rank-0000r-of-0000N.safetensors` (its moments), rank 0
// adds `zero-manifest.json` (who owns which range, the step). Loading reads whichever files overlap
// the new owner's range, so a run resumes on any rank count; a full `optimizer.bin` of an unsharded
// run loads the same way (one shard covering everything).
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

/** What ZeRO needs beyond the all-reduce: the two shard collectives of @mpo/allreduce. */
export interface ShardCommunicator extends Communicator {
  reduceScatterSum(buf: Float32Array, align: number): Promise<void>;
  allGather(buf: Float32Array, align: number): Promise<void>;
}

export interface ZeroModel {
  paramBuffer(): Float32Array;
  gradBuffer(): Float32Array;
  syncParams(): void;
}

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

export class ZeroOptimizer {
  readonly start: number;
  readonly end: number;
  readonly align = normBlock();
  readonly rank: number;
  readonly worldSize: number;
  /** AdamW moments of my slice. */
  m: Float32Array;
  v: Float32Array;
  step = 0;

  constructor(
    private readonly model: ZeroModel,
    private readonly comm: ShardCommunicator | undefined,
    readonly stage: 1 | 2,
    private readonly threads = 1,
  ) {
    this.rank = comm?.rank ?? 0;
    this.worldSize = comm?.worldSize ?? 1;
    const n = model.paramBuffer().length;
    ({ start: this.start, end: this.end } = shardRange(n, this.rank, this.worldSize, this.align));
    this.m = new Float32Array(this.end - this.start);
    this.v = new Float32Array(this.end - this.start);
  }

  get numParameters(): number {
    return this.model.paramBuffer().length;
  }

  /** Sums the ranks' gradients: all of them (stage 1) or only my slice (stage 2). */
  async reduceGradients(): Promise<{ bytes: number }> {
    const g = this.model.gradBuffer();
    if (!this.comm || this.worldSize === 1) return { bytes: 0 };
    if (this.stage === 2) await this.comm.reduceScatterSum(g, this.align);
    else await this.comm.allReduceSum(g);
    return { bytes: g.byteLength };
  }

  /** The global gradient norm, added exactly as the engine adds it (blocks in order, in double). */
  async gradNorm(): Promise<number> {
    const g = this.model.gradBuffer();
    const mine = sumSquaresBlocks(g.subarray(this.start, this.end), this.threads);
    const all = new Float64Array(Math.ceil(g.length / this.align));
    all.set(mine, this.start / this.align);
    // The doubles travel as pairs of float32 words: all-gather only copies, so the bits survive,
    // and block b's partial lies in the shard (of 2 words per block) of the rank owning block b.
    if (this.comm && this.worldSize > 1) await this.comm.allGather(new Float32Array(all.buffer), 2);
    let s = 0;
    for (const p of all) s += p;
    return Math.sqrt(s);
  }

  /** AdamW on my slice, then every rank gets every slice. Returns the pre-clip norm; a non-finite one skips. */
  async stepShard(o: ZeroStepOptions): Promise<{ gradNorm: number }> {
    const norm = await this.gradNorm();
    if (!Number.isFinite(norm)) return { gradNorm: norm };
    // torch.nn.utils.clip_grad_norm_'s coefficient, as the engine applies it.
    const clip = o.maxGradNorm > 0 && norm > o.maxGradNorm ? o.maxGradNorm / (norm + 1e-6) : 1;
    this.step += 1;
    const slice = (x: Float32Array) => x.subarray(this.start, this.end);
    adamwShard(
      { p: slice(this.model.paramBuffer()), g: slice(this.model.gradBuffer()), m: this.m, v: this.v },
      { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay },
      this.step,
      clip,
      this.threads,
    );
    if (this.comm && this.worldSize > 1) await this.comm.allGather(this.model.paramBuffer(), this.align);
    this.model.syncParams();
    return { gradNorm: norm };
  }

  /** Writes my moments to `dir/optimizer-rank-…safetensors` (atomically: temp file, then rename). */
  async saveShard(dir: string): Promise<string> {
    await mkdir(dir, { recursive: true });
    const len = this.end - this.start;
    const file = shardFileName(this.rank, this.worldSize);
    const header = buildHeader(
      [
        { name: 'exp_avg', dtype: 'F32', shape: [len] },
        { name: 'exp_avg_sq', dtype: 'F32', shape: [len] },
      ],
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
      for (const a of [this.m, this.v]) writeAll(fd, a);
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
      shards,
    };
    await writeFile(join(dir, ZERO_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    if ((await readdir(staging)).length === 0) await rm(staging, { recursive: true, force: true });
    return manifest;
  }

  /**
   * Loads my slice of the moments from a checkpoint folder written with any rank count (its
   * manifest), or from an unsharded run's optimizer.bin.
   */
  async load(dir: string): Promise<void> {
    const sources = await optimizerSources(dir, this.numParameters);
    for (const [target, name] of [
      [this.m, 'exp_avg'],
      [this.v, 'exp_avg_sq'],
    ] as const) {
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
    for (const name of ['exp_avg', 'exp_avg_sq']) {
      const t = st.tensors.get(name);
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
