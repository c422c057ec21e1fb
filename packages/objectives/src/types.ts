// Shapes shared with the engine. They are structural copies of @mpo/engine's types on purpose:
// objectives are pure functions of scores and must not depend on the engine package.

/** Pooled hidden states may be float32 (engine) or float64 (tests, finite differences). */
export type FloatArray = Float32Array | Float64Array;

/** Scores of one group of n sequences, as produced by the engine's forward pass. */
export interface SequenceScores {
  n: number;
  hiddenSize: number;
  /** Σ over response tokens of log p(token | prefix). */
  sumLogp: Float64Array;
  /** Number of response tokens per sequence (|y|). Never differentiated. */
  tokens: Int32Array;
  /** Final-norm hidden state at the last non-padding position, n*hiddenSize. */
  lastHidden?: FloatArray;
  /** Final-norm hidden state averaged over the non-padding positions, n*hiddenSize. */
  meanHidden?: FloatArray;
  /** Final-norm hidden state averaged over all positions incl. padding (official MPO code), n*hiddenSize. */
  meanUnmaskedHidden?: FloatArray;
  /** Per-sequence KL between policy and reference token distributions on the response (engine-defined). */
  kl?: Float64Array;
}

/** d(loss)/d(score) for one group; a missing field means a zero gradient. */
export interface ScoreGrads {
  sumLogp?: Float64Array;
  lastHidden?: Float32Array;
  meanHidden?: Float32Array;
  meanUnmaskedHidden?: Float32Array;
  kl?: Float64Array;
}

/**
 * Sequence groups an objective can ask for. A batch holds n examples; every group has one sequence per example.
 * - target*: the preference pair being trained on (the target-language pair of an MPO row, or the only pair of
 *   a pairwise row).
 * - dominant*: the dominant-language pair of the same prompt (MPO rows only).
 * - anchor*: the pair of the same prompt in another language (MPO's RG_d = {language} ablation).
 * - klMismatched: prompt of example i with a mismatched completion (KTO's KL estimate, see SequenceSpec).
 */
export type GroupName =
  | 'targetChosen'
  | 'targetRejected'
  | 'dominantChosen'
  | 'dominantRejected'
  | 'anchorChosen'
  | 'anchorRejected'
  | 'klMismatched';

export type ScoresByGroup = Partial<Record<GroupName, SequenceScores>>;
export type GradsByGroup = Partial<Record<GroupName, ScoreGrads>>;

/** How a pooled hidden state is formed (MPO ablation, paper Table 15). */
export type Pooling = 'mean' | 'mean-unmasked' | 'last';

/** Which sequence of an example a group is. */
export interface SequenceSpec {
  /** 'target' | 'dominant' pair of the row, or the same prompt's pair in another language. */
  pair: 'target' | 'dominant' | { language: string };
  /**
   * 'mismatched' = prompt of this example followed by the chosen response of its KL partner: a different row,
   * fixed at data-preparation time (TRL's KTO builds its KL dataset the same way, before shuffling), so that the
   * reference scores of these sequences can be precomputed once.
   */
  response: 'chosen' | 'rejected' | 'mismatched';
}

/** What the engine must compute for one group. */
export interface GroupRequest {
  group: GroupName;
  sequence: SequenceSpec;
  /** Needs the LM head: sumLogp (and tokens). */
  sumLogp: boolean;
  /** Needs the pooled final-norm hidden state with this pooling. */
  hidden?: Pooling;
  /**
   * Policy: needs the per-sequence KL between policy and reference token distributions on the response.
   * Reference: the reference's token distributions of these sequences must be precomputed for that KL.
   */
  kl?: boolean;
  /** Policy only: compute() returns gradients for this group; false means a forward pass without backward. */
  grad: boolean;
}

export interface Requirements {
  /** Scored with the current weights every step. */
  policy: GroupRequest[];
  /** Precomputed once with the initial weights (no grad); the training step never runs a reference model. */
  reference: GroupRequest[];
}

/** Optional per-example context, used only for metrics (e.g. reward gap per language). */
export interface BatchInfo {
  lang?: readonly string[];
}

export interface ObjectiveResult {
  /** Batch loss as the method defines it (usually a mean over the batch). */
  loss: number;
  /** d(loss)/d(score) for every policy group with grad: true. */
  grads: GradsByGroup;
  metrics: Record<string, number>;
  /**
   * How many examples each metric averages over, for the metrics that are not over the whole batch (per-language
   * ones: `rg/target/zh` counts the zh examples). A caller combining batches (micro-batches, ranks) weights each
   * metric by its count, so a language present in one micro-batch of two is not halved.
   */
  metricCounts?: Record<string, number>;
}

/**
 * Where MPO's dominant-language reward gap RG_d comes from: the frozen reference (the paper's MPO), the policy with
 * gradients through RG_d (the paper's MPO-Policy, Appendix H.3 Eq. 28), the policy detached (a stop-gradient
 * variant the paper does not run), a constant (Table 13) or another language's reference gap (Table 5).
 */
export type RgdSource =
  | 'reference'
  | 'policy'
  | 'policy-detached'
  | { constant: number }
  | { language: string };

export type ParamSpec =
  | {
      name: string;
      kind: 'number';
      default: number;
      min?: number;
      max?: number;
      /** min/max themselves are excluded. */
      minExclusive?: boolean;
      maxExclusive?: boolean;
      description: string;
    }
  | { name: string; kind: 'boolean'; default: boolean; description: string }
  | { name: string; kind: 'enum'; default: string; values: readonly string[]; description: string }
  | { name: string; kind: 'rgdSource'; default: RgdSource; description: string };

export interface Objective<H extends object> {
  name: string;
  description: string;
  schema: readonly ParamSpec[];
  defaults: Readonly<H>;
  /** Groups to score, for these hyperparameters (missing ones take their defaults). */
  requirements(hparams?: Partial<H>): Requirements;
  /** Loss, d(loss)/d(score) and metrics for one batch. Missing hyperparameters take their defaults. */
  compute(
    policy: ScoresByGroup,
    reference: ScoresByGroup,
    hparams?: Partial<H>,
    batch?: BatchInfo,
  ): ObjectiveResult;
}

export interface Problem {
  path: string;
  reason: string;
}
