// The training config's `lora` field: LoRA adapters on a frozen base (engine csrc/lora.h).
// Defaults are PEFT's `LoraConfig` (r = 8, lora_alpha = 8, lora_dropout = 0.0) and, for the
// target modules, PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING entry for llama and
// qwen2 (["q_proj", "v_proj"]; peft/utils/constants.py).
import { isObject } from '@mpo/data';
import { LORA_TARGET_MODULES } from '@mpo/engine';

export interface LoraSpec {
  rank: number;
  alpha: number;
  dropout: number;
  targetModules: string[];
}

export const LORA_DEFAULTS: LoraSpec = { rank: 8, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] };

/** Validates `lora` (reporting each problem through `bad`) and fills PEFT's defaults. */
export function parseLoraSpec(
  raw: unknown,
  bad: (path: string, reason: string) => void,
): LoraSpec | undefined {
  if (raw === undefined) return undefined;
  if (!isObject(raw)) {
    bad('lora', 'must be an object {"rank", "alpha", "dropout", "targetModules"}');
    return undefined;
  }
  for (const k of Object.keys(raw))
    if (!['rank', 'alpha', 'dropout', 'targetModules'].includes(k)) bad(`lora.${k}`, 'unknown field');
  const rank = raw.rank ?? LORA_DEFAULTS.rank;
  if (!Number.isInteger(rank) || (rank as number) < 1 || (rank as number) > 65536)
    bad('lora.rank', 'must be an integer in [1, 65536]');
  const alpha = raw.alpha ?? LORA_DEFAULTS.alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0)
    bad('lora.alpha', 'must be a positive number');
  const dropout = raw.dropout ?? LORA_DEFAULTS.dropout;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1))
    bad('lora.dropout', 'must be a number in [0, 1)');
  const targets = raw.targetModules ?? LORA_DEFAULTS.targetModules;
  const names = LORA_TARGET_MODULES as readonly string[];
  if (!Array.isArray(targets) || targets.length === 0)
    bad('lora.targetModules', `must be a non-empty list of ${names.join(', ')}`);
  else {
    targets.forEach((t, i) => {
      if (!names.includes(t as string))
        bad(`lora.targetModules[${i}]`, `unknown module ${JSON.stringify(t)} (expected ${names.join(', ')})`);
    });
    if (new Set(targets).size !== targets.length) bad('lora.targetModules', 'lists a module twice');
  }
  return {
    rank: rank as number,
    alpha: alpha as number,
    dropout: dropout as number,
    targetModules: [...(targets as string[])],
  };
}
