// Per-backbone MPO settings from the paper (Zhao et al., ACL 2025), selectable by name in `mpo train` configs and in
// run specs (`"preset": "llama3.1-8b"`). Values a config or spec states itself win over the preset's.
//
//   learning rate, epochs, β:  Table 8 ("The hyperparameters in our proposed MPO used for all three backbones")
//   batch size 8:               Appendix G ("a batch size of 8 consistently yields the best performance")
//   cutoff 2048:                Appendix G ("trained with a maximum sequence length of 2048"). The released configs
//                               (circle-hit/MPO examples/train_mpo/*.yaml) use cutoff_len 1024; pass "cutoff": 1024
//                               to reproduce those instead.
//   cosine, 10% warm-up:        Appendix G (the trainer's only schedule is cosine; warmupRatio 0.1)
//
// The released configs agree on lr, β, epochs, cosine and warmup_ratio 0.1, with per_device_train_batch_size 1 on
// eight GPUs (a global batch of 8).

export interface BackbonePreset {
  /** Hugging Face model the paper trains. */
  model: string;
  method: 'mpo';
  hyperparameters: { beta: number };
  training: { learningRate: number; epochs: number; batchSize: number; warmupRatio: number };
  /** Maximum sequence length (prompt + response) in tokens. */
  cutoff: number;
}

const common = { epochs: 2, batchSize: 8, warmupRatio: 0.1 } as const;

export const PRESETS = {
  'llama3.1-8b': {
    model: 'meta-llama/Llama-3.1-8B-Instruct',
    method: 'mpo',
    hyperparameters: { beta: 1.0 },
    training: { learningRate: 6e-7, ...common },
    cutoff: 2048,
  },
  'gemma2-9b': {
    model: 'google/gemma-2-9b-it',
    method: 'mpo',
    hyperparameters: { beta: 1.5 },
    training: { learningRate: 4e-7, ...common },
    cutoff: 2048,
  },
  'qwen2.5-7b': {
    model: 'Qwen/Qwen2.5-7B-Instruct',
    method: 'mpo',
    hyperparameters: { beta: 1.5 },
    training: { learningRate: 6e-7, ...common },
    cutoff: 2048,
  },
} as const satisfies Record<string, BackbonePreset>;

export type PresetName = keyof typeof PRESETS;
export const presetNames = Object.keys(PRESETS) as PresetName[];

export function isPresetName(x: unknown): x is PresetName {
  return typeof x === 'string' && Object.hasOwn(PRESETS, x);
}

/** Why `preset` cannot be used with `method`, or null when it can (a preset holds MPO's tuned values). */
export function presetConflict(preset: PresetName, method: unknown): string | null {
  if (method === undefined || method === PRESETS[preset].method) return null;
  return `preset "${preset}" holds MPO's Table 8 values and applies to method "mpo" only, got method ${JSON.stringify(method)}`;
}
