// AdamW over one shard of the flat buffers, for ZeRO: the same kernels, constants and norm blocks
// as Model.step, so a sharded run can reproduce an unsharded one bit for bit.
import { native } from './native.js';

export interface ShardStepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** Model.step's gradient norm sums squares in fixed blocks of this many elements, in double. */
export function normBlock(): number {
  return native().normBlock;
}

/**
 * Sum of squares (double) of each normBlock() elements of `g`, in order. When `g` starts on a block
 * boundary of the flat gradient, these are Model.step's partial sums for those blocks; adding all
 * blocks' partials in block order and taking the square root gives its norm exactly.
 */
export function sumSquaresBlocks(g: Float32Array, threads = 1): Float64Array {
  return native().sumSquaresBlocks(g, threads);
}

/**
 * One AdamW update of the shard p (in place, with its moments m and v) from gradient g, at optimizer
 * step `step` (1-based, for the bias corrections) and clip coefficient `clip` (1 = none): Model.step's
 * arithmetic element by element.
 */
export function adamwShard(
  shard: { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array },
  opts: ShardStepOptions,
  step: number,
  clip: number,
  threads = 1,
): void {
  if (!(Number.isFinite(opts.lr) && Number.isFinite(clip)))
    throw new Error('adamwShard: lr and clip must be finite');
  native().adamwShard(shard.p, shard.g, shard.m, shard.v, opts, step, clip, threads);
}
