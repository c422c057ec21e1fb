export { HyperparameterError, validateAgainstSchema } from './hparams.js';
export { log1mexp, logSigmoid, sigmoid } from './math.js';
export { type CpoHparams, cpo } from './methods/cpo.js';
export { type DpoHparams, dpo } from './methods/dpo.js';
export { type IpoHparams, ipo } from './methods/ipo.js';
export { type KtoHparams, kto } from './methods/kto.js';
export { type LengthDpoHparams, lengthDpo } from './methods/length-dpo.js';
export { type MpoHparams, mpo } from './methods/mpo.js';
export { type OrpoHparams, orpo } from './methods/orpo.js';
export { type RobustDpoHparams, robustDpo } from './methods/robust-dpo.js';
export { type SftHparams, sft } from './methods/sft.js';
export { type SimpoHparams, simpo } from './methods/simpo.js';
export {
  type BackbonePreset,
  isPresetName,
  PRESETS,
  type PresetName,
  presetConflict,
  presetNames,
} from './presets.js';
export {
  type AnyObjective,
  getObjective,
  type HparamsByMethod,
  isMethodName,
  type MethodName,
  methodNames,
  objectives,
  resolveHyperparameters,
  validateHyperparameters,
} from './registry.js';
export { poolingField, ScoreError } from './scores.js';
export type {
  BatchInfo,
  FloatArray,
  GradsByGroup,
  GroupName,
  GroupRequest,
  Objective,
  ObjectiveResult,
  ParamSpec,
  Pooling,
  Problem,
  Requirements,
  RgdSource,
  ScoreGrads,
  ScoresByGroup,
  SequenceScores,
  SequenceSpec,
} from './types.js';
