// The part of @mpo/engine's Model the trainer drives. Written as a structural
// interface so the training loop can be read without the addon's details; the
// batch and the step options are the engine's own types, imported, not copied.
import type { ScoreBatch, StepOptions } from '@mpo/engine';
import type { GroupName, Pooling, ScoreGrads, SequenceScores } from '@mpo/objectives';

export type EnginePooling = 'last' | 'mean' | 'meanUnmasked';

/** The engine's own batch shape: prompt ids followed by response ids, and where each response starts. */
export type { ScoreBatch };

export interface ScoreOptions {
  grad?: boolean;
  lmHead?: boolean;
  pooling?: EnginePooling[];
  reference?: TrainableModel;
}

export interface ScoreResult extends SequenceScores {
  handle?: number;
}

export interface TrainableModel {
  /** Compute dtype ('float32', 'bfloat16', ...): ZeRO keeps a separate fp32 master below fp32. */
  readonly dtype?: string;
  /** 'bfloat16': weights and gradients are bf16 only (engine weightStorage; ZeRO keeps the masters). */
  readonly weightStorage?: string;
  score(batch: ScoreBatch, opts?: ScoreOptions): Promise<ScoreResult>;
  backward(handle: number, grads: ScoreGrads): Promise<void>;
  release(handle: number): void;
  zeroGrad(): void;
  gradBuffer(): Float32Array;
  /** The flat fp32 parameters (ZeRO writes the gathered shards here, then syncParams()). */
  paramBuffer(): Float32Array;
  syncParams(): void;
  /** weightStorage 'bfloat16': the bf16 bits of the weights and of the gradients. */
  paramBits?(): Uint16Array;
  gradBits?(): Uint16Array;
  step(opts: StepOptions): Promise<{ gradNorm: number }>;
  weightsHash(): string;
  save(dir: string): Promise<void>;
  saveOptimizer(path: string): Promise<void>;
  loadOptimizer(path: string): Promise<void>;
  /** LoRA models: the step that keys the dropout masks (engine Model.setAdapterStep). */
  setAdapterStep?(step: number): void;
}

/** The objectives package names poolings after the paper; the engine after its outputs. */
export const enginePooling: Record<Pooling, EnginePooling> = {
  mean: 'mean',
  'mean-unmasked': 'meanUnmasked',
  last: 'last',
};

export type { GroupName };
