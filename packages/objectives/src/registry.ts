// Every method by name, with hyperparameter validation for configs.
import { HyperparameterError, resolveAgainstSchema, validateAgainstSchema } from './hparams.js';
import { type CpoHparams, cpo } from './methods/cpo.js';
import { type DpoHparams, dpo } from './methods/dpo.js';
import { type IpoHparams, ipo } from './methods/ipo.js';
import { type KtoHparams, kto } from './methods/kto.js';
import { type LengthDpoHparams, lengthDpo } from './methods/length-dpo.js';
import { type MpoHparams, mpo } from './methods/mpo.js';
import { type OrpoHparams, orpo } from './methods/orpo.js';
import { type RobustDpoHparams, robustDpo } from './methods/robust-dpo.js';
import { type SftHparams, sft } from './methods/sft.js';
import { type SimpoHparams, simpo } from './methods/simpo.js';
import type { Objective, Problem } from './types.js';

export interface HparamsByMethod {
  mpo: MpoHparams;
  sft: SftHparams;
  dpo: DpoHparams;
  ipo: IpoHparams;
  rdpo: RobustDpoHparams;
  cpo: CpoHparams;
  kto: KtoHparams;
  orpo: OrpoHparams;
  'r-dpo': LengthDpoHparams;
  simpo: SimpoHparams;
}

/** 'rdpo' is robust DPO (label noise); 'r-dpo' is length-regularised DPO. */
export type MethodName = keyof HparamsByMethod;

export const objectives: { readonly [M in MethodName]: Objective<HparamsByMethod[M]> } = {
  mpo,
  sft,
  dpo,
  ipo,
  rdpo: robustDpo,
  cpo,
  kto,
  orpo,
  'r-dpo': lengthDpo,
  simpo,
};

/**
 * An objective with its hyperparameter type erased, for code that picks the method at run time from a config
 * (hyperparameters are then checked by the schema at call time).
 */
export type AnyObjective = Objective<object>;

/** The objective for a method name; throws on an unknown name (validate configs with validateHyperparameters). */
export function getObjective(method: string): AnyObjective {
  if (!isMethodName(method))
    throw new Error(`unknown method ${JSON.stringify(method)}; expected one of: ${methodNames.join(', ')}`);
  return objectives[method] as AnyObjective;
}

export const methodNames = Object.keys(objectives) as MethodName[];

export function isMethodName(x: unknown): x is MethodName {
  return typeof x === 'string' && Object.hasOwn(objectives, x);
}

/**
 * Every problem with a method name and its hyperparameters (missing keys take defaults, so {} is valid).
 * `prefix` is prepended to paths, e.g. "hyperparameters" → "hyperparameters.beta".
 */
export function validateHyperparameters(method: unknown, obj: unknown, prefix = ''): Problem[] {
  if (!isMethodName(method)) {
    return [
      {
        path: 'method',
        reason: `unknown method ${JSON.stringify(method)}; expected one of: ${methodNames.join(', ')}`,
      },
    ];
  }
  return validateAgainstSchema(objectives[method].schema, obj, prefix);
}

/** Defaults overlaid with `obj`; throws HyperparameterError listing every problem. */
export function resolveHyperparameters<M extends MethodName>(method: M, obj: unknown): HparamsByMethod[M] {
  if (!isMethodName(method))
    throw new HyperparameterError(String(method), validateHyperparameters(method, obj));
  const o = objectives[method] as Objective<HparamsByMethod[M]>;
  return resolveAgainstSchema(method, o.schema, o.defaults, obj);
}
