// LoRA options and PEFT's adapter folder format (adapter_config.json + adapter_model.safetensors).
// The adapters themselves live in the addon (csrc/lora.h).

/** The projections adapters can sit on, in Hugging Face module names (Llama/Qwen2 decoder). */
export const LORA_TARGET_MODULES = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;
export type LoraTargetModule = (typeof LORA_TARGET_MODULES)[number];

export interface LoraOptions {
  /** r: rank of A [r, in] and B [out, r]. */
  rank: number;
  /** lora_alpha: the update is scaled by alpha / rank. */
  alpha: number;
  /** lora_dropout: dropout probability on each adapter's input (training forwards only). Default 0. */
  dropout?: number;
  /** Which projections get adapters (PEFT's target_modules by name). */
  targetModules: readonly string[];
  /** Seeds A's init and the dropout masks (default 0). */
  seed?: number;
}

/** Checks options; returns them with defaults filled. Errors name the field. */
export function validateLora(o: LoraOptions): Required<LoraOptions> {
  const where = 'lora';
  if (!Number.isInteger(o.rank) || o.rank < 1)
    throw new Error(`${where}.rank must be a positive integer (got ${o.rank})`);
  if (!(typeof o.alpha === 'number' && Number.isFinite(o.alpha) && o.alpha > 0))
    throw new Error(`${where}.alpha must be a positive number (got ${o.alpha})`);
  const dropout = o.dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1))
    throw new Error(`${where}.dropout must be in [0, 1) (got ${dropout})`);
  if (!Array.isArray(o.targetModules) || o.targetModules.length === 0)
    throw new Error(`${where}.targetModules must be a non-empty list of ${LORA_TARGET_MODULES.join(', ')}`);
  for (const t of o.targetModules) {
    if (!(LORA_TARGET_MODULES as readonly string[]).includes(t))
      throw new Error(
        `${where}.targetModules: unknown module '${t}' (expected ${LORA_TARGET_MODULES.join(', ')})`,
      );
  }
  if (new Set(o.targetModules).size !== o.targetModules.length)
    throw new Error(`${where}.targetModules lists a module twice`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`${where}.seed must be a non-negative integer`);
  return { rank: o.rank, alpha: o.alpha, dropout, targetModules: [...o.targetModules], seed };
}

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/**
 * adapter_config.json as PEFT's `LoraConfig.save_pretrained` writes it (the fields
 * `PeftModel.from_pretrained` reads; unset options at PEFT's defaults).
 */
export function peftAdapterConfig(
  o: Required<LoraOptions>,
  baseModel: string | null,
): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: o.rank,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    target_modules: [...o.targetModules],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/** LoRA options from an adapter_config.json (PEFT's field names); rejects what the engine lacks. */
export function fromPeftAdapterConfig(cfg: Record<string, unknown>, path: string): Required<LoraOptions> {
  if (cfg.peft_type !== 'LORA') throw new Error(`${path}: peft_type ${String(cfg.peft_type)} is not LORA`);
  if (cfg.use_dora === true || cfg.use_rslora === true)
    throw new Error(`${path}: DoRA / rsLoRA adapters are not supported`);
  if (cfg.bias !== undefined && cfg.bias !== 'none')
    throw new Error(`${path}: bias '${cfg.bias}' is not supported`);
  const nonEmpty = (v: unknown) => v !== undefined && v !== null && Object.keys(v as object).length > 0;
  if (nonEmpty(cfg.rank_pattern) || nonEmpty(cfg.alpha_pattern) || nonEmpty(cfg.layers_to_transform))
    throw new Error(`${path}: per-layer rank/alpha patterns and layers_to_transform are not supported`);
  const targets = typeof cfg.target_modules === 'string' ? [cfg.target_modules] : cfg.target_modules;
  return validateLora({
    rank: cfg.r as number,
    alpha: cfg.lora_alpha as number,
    dropout: (cfg.lora_dropout as number | undefined) ?? 0,
    targetModules: targets as string[],
  });
}
