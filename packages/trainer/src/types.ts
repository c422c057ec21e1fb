/** Token ids of one preference pair: sequence = prompt ++ response. */
export interface PairIds {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

/**
 * One training example after tokenization and truncation. `target` is the pair
 * being trained on; `dominant` is the same prompt's dominant-language pair (MPO
 * rows); `others` holds the same prompt's pairs in further languages (for the
 * RG_d = {language} ablation); `mismatched` is the chosen response of this
 * example's KL partner (KTO), fixed when the dataset is built.
 */
export interface TrainExample {
  id: string;
  lang: string;
  target: PairIds;
  dominant?: PairIds;
  others?: Record<string, PairIds>;
  mismatched?: number[];
}

/** What the trainer reports after every optimizer step. */
export interface StepRecord {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  seconds: number;
  /** The objective's named metrics (loss parts, margins, ...). */
  metrics: Record<string, number>;
  /** Mean target-language reward gap of the batch, and per language. */
  rgTarget?: number;
  rgByLanguage: Record<string, number>;
  /** Time split of the step, seconds (data, forward, objective, backward, accumulate, allreduce, optimizer). */
  timing: Record<string, number>;
}

export interface CheckpointRecord {
  step: number;
  dir: string;
  bytes: number;
  sha256: string;
}

/** Gradient all-reduce across data-parallel ranks (sum, in place). */
export interface Communicator {
  rank: number;
  worldSize: number;
  allReduceSum(buf: Float32Array): Promise<void>;
  /** ZeRO (training.zeroStage > 0): the shard collectives of @mpo/allreduce's ShmCommunicator. */
  reduceScatterSum?(buf: Float32Array, align: number): Promise<void>;
  allGather?(buf: Float32Array, align: number): Promise<void>;
}
