// LLaMA-Factory training YAML, as it is, mapped to our training config
// (`mpo train`) or run spec (`POST /runs`). The reference is the official MPO
// repository (github.com/circle-hit/MPO, examples/train_mpo/*.yaml): its
// `stage: dpo` trainer computes the MPO loss MSE(β·RG_target, RG_dominant)
// whenever the dataset is in MPO format ("formatting": "ours"), so stage dpo
// + MPO data is our method "mpo" with beta = pref_beta.
//
// Every field is in exactly one of three lists: mapped (FIELDS), ignored with
// a reason (IGNORED: logging, caching, launcher settings that do not change
// the result), or refused with a reason when its value would change the
// training and we cannot do the same (`cannot`). Unknown fields are ignored
// and named in a warning. Nothing here reads files: the caller passes
// `dataFormatOf` to tell MPO data from pairwise data.
import type { Problem } from './problems.js';

export type LlamaFactoryTarget = 'train' | 'run';

export interface LlamaFactoryOptions {
  target: LlamaFactoryTarget;
  /** The format of a data path (MPO JSON or pairwise), or undefined when it cannot be told. */
  dataFormatOf?: (path: string) => 'mpo' | 'pairwise' | string | undefined;
}

export interface LlamaFactoryResult {
  /** Our config (`mpo train`) or run spec fields (`POST /runs`), still to be validated by their own validators. */
  config: Record<string, unknown>;
  /** "field: why it is ignored", one per ignored field. */
  ignored: string[];
  /** Fields whose value we cannot honour: each an error. */
  problems: Problem[];
}

/** Fields that mark a LLaMA-Factory config (ours never have them). */
export function isLlamaFactoryConfig(raw: unknown): raw is Record<string, unknown> {
  return (
    typeof raw === 'object' &&
    raw !== null &&
    !Array.isArray(raw) &&
    ('model_name_or_path' in raw || 'stage' in raw)
  );
}

/** Official MPO dataset names (data/dataset_info.json of the MPO repository) → our builtin ids. */
export const LLAMAFACTORY_DATASETS: Record<string, string> = {
  llama_mpo_data: 'builtin:mpo-llama',
  gemma_mpo_data: 'builtin:mpo-gemma',
  qwen_mpo_data: 'builtin:mpo-qwen',
};

/**
 * LLaMA-Factory templates → ours, where the rendered prompt is the same
 * (src/llamafactory/data/template.py of the MPO repository: llama3 and
 * llama3.1 are identical). LLaMA-Factory's `qwen` adds the Qwen2.5 system
 * prompt, ours adds Qwen2's, so it is refused rather than silently changed.
 */
export const LLAMAFACTORY_TEMPLATES: Record<string, string> = {
  llama3: 'llama3',
  'llama3.1': 'llama3',
  gemma: 'gemma',
  qwen2: 'qwen2',
};

/**
 * The target languages and dominant language of the paper's experiments
 * (Zhao et al., ACL 2025, §4: Zh, Jp, Ko, Ar, Bn, Sw; En dominant), used for a
 * run when the request names none.
 */
export const PAPER_TARGET_LANGUAGES = ['zh', 'ja', 'ko', 'ar', 'bn', 'sw'] as const;
export const PAPER_DOMINANT_LANGUAGE = 'en';

/** Fields that do not change what is trained (or are our defaults anyway), with why they are ignored. */
const IGNORED: Record<string, string> = {
  do_eval: 'held-out evaluation is configured by our eval settings',
  deepspeed: 'no ZeRO sharding here; data parallelism is our launcher (resources.ranksPerTrial / mpo launch)',
  overwrite_cache: 'no dataset cache',
  preprocessing_num_workers: 'tokenization runs in-process',
  dataloader_num_workers: 'no dataloader workers',
  logging_steps: 'every step is logged',
  plot_loss: 'curves are in Postgres, TensorBoard files and the dashboard',
  overwrite_output_dir: 'the output folder is reused and resumed from',
  ddp_timeout: 'no NCCL process group timeout',
  save_only_model: 'checkpoints hold what a bit-identical resume needs',
  report_to: 'metrics go to Postgres, metrics.jsonl and TensorBoard event files',
  trust_remote_code: 'models are loaded by our engine, no remote code',
  resume_from_checkpoint: 'training resumes from the output folder’s latest checkpoint by itself',
  flash_attn: 'attention kernels are the engine’s',
  eval_dataset: 'held-out pairs come from the data split (data.heldOut)',
  val_size: 'held-out pairs come from the data split (data.heldOut)',
  per_device_eval_batch_size: 'evaluation batch size is the engine’s',
  eval_strategy: 'held-out evaluation is configured by our eval settings',
  eval_steps: 'held-out evaluation is configured by our eval settings',
  dataset_dir: 'datasets are named by builtin id or path, not through dataset_info.json',
  run_name: 'the run name comes from the spec',
};

/**
 * What an absent field means there: the MPO repository's hparams
 * (src/llamafactory/hparams/finetuning_args.py: pref_beta 0.1, stage sft,
 * finetuning_type lora; data_args.py: cutoff_len 1024) and transformers'
 * TrainingArguments (learning_rate 5e-5, num_train_epochs 3, warmup_ratio 0,
 * lr_scheduler_type linear, per_device_train_batch_size 8,
 * gradient_accumulation_steps 1, save_strategy steps, save_steps 500), so a
 * YAML that leaves a field out trains as it would there, not with our defaults.
 */
export const LLAMAFACTORY_DEFAULTS = {
  pref_beta: 0.1,
  pref_loss: 'sigmoid',
  stage: 'sft',
  finetuning_type: 'lora',
  cutoff_len: 1024,
  learning_rate: 5e-5,
  num_train_epochs: 3,
  warmup_ratio: 0,
  lr_scheduler_type: 'linear',
  per_device_train_batch_size: 8,
  gradient_accumulation_steps: 1,
  save_strategy: 'steps',
  save_steps: 500,
} as const;
const D = LLAMAFACTORY_DEFAULTS;

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Maps a LLaMA-Factory YAML (already parsed) to our config. Paths stay as
 * written: the caller resolves them (against the config's folder for
 * `mpo train`, under the model and data roots for runs).
 */
export function fromLlamaFactory(
  raw: Record<string, unknown>,
  opts: LlamaFactoryOptions,
): LlamaFactoryResult {
  const problems: Problem[] = [];
  const ignored: string[] = [];
  const cannot = (field: string, reason: string) => problems.push({ path: field, reason });
  const ignore = (field: string, why: string) => ignored.push(`${field}: ${why}`);
  const run = opts.target === 'run';
  const training: Record<string, unknown> = {};
  const hyperparameters: Record<string, unknown> = {};
  const config: Record<string, unknown> = {};
  const seen = new Set<string>();
  const take = (k: string) => {
    seen.add(k);
    return raw[k];
  };
  const m: Mapping = { raw, opts, run, take, cannot, ignore, training, hyperparameters, config };

  // Field groups in the order their problems are reported; each takes the fields it reads.
  const { data, mpoData } = mapModelAndData(m);
  mapMethod(m, data, mpoData);
  mapSequence(m);
  mapOptimisation(m);
  mapPrecision(m);
  mapOutput(m);

  // ---- everything else
  for (const k of Object.keys(raw)) {
    if (seen.has(k)) continue;
    ignore(k, IGNORED[k] ?? 'not a field this mapping knows');
  }

  config.data = run
    ? data.map((d) => (d.format ? { path: d.path, format: d.format } : d.path))
    : {
        ...(data[0] ? { path: data[0].path } : {}),
        ...(data[0]?.format ? { format: data[0].format } : {}),
        ...(config.data as object),
      };
  config.training = training;
  return { config, ignored, problems };
}

/** What the field groups of fromLlamaFactory share: the YAML, where the mapped fields go, and the reports. */
interface Mapping {
  raw: Record<string, unknown>;
  opts: LlamaFactoryOptions;
  /** Mapping for a run (POST /runs) rather than `mpo train`. */
  run: boolean;
  /** A field's value, marking it as read (fields never read are reported as ignored). */
  take: (k: string) => unknown;
  cannot: (field: string, reason: string) => void;
  ignore: (field: string, why: string) => void;
  training: Record<string, unknown>;
  hyperparameters: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** The model, and the datasets (official MPO names or file paths) with whether any is MPO data. */
function mapModelAndData(m: Mapping): {
  data: { path: string; format: string | undefined }[];
  mpoData: boolean;
} {
  const { take, cannot, run, config, opts } = m;
  const model = take('model_name_or_path');
  if (typeof model !== 'string' || !model)
    cannot('model_name_or_path', 'required: a model folder or builtin id');
  else config.model = model;

  const dataset = take('dataset');
  let mpoData = false;
  const names =
    typeof dataset === 'string'
      ? dataset
          .split(',')
          .map((d) => d.trim())
          .filter(Boolean)
      : [];
  if (names.length === 0) cannot('dataset', 'required: a dataset name or file');
  const data = names.map((name) => {
    const builtin = LLAMAFACTORY_DATASETS[name] ?? (name.startsWith('builtin:') ? name : undefined);
    const format = builtin ? (/mpo/.test(builtin) ? 'mpo' : undefined) : opts.dataFormatOf?.(name);
    if (!builtin && !/[./]/.test(name))
      cannot(
        'dataset',
        `"${name}" is neither an official MPO dataset (${Object.keys(LLAMAFACTORY_DATASETS).join(', ')}) nor a file path; dataset_info.json lookups are not supported, name the file`,
      );
    if (format === 'mpo') mpoData = true;
    return { path: builtin ?? name, format };
  });
  if (!run && data.length > 1)
    cannot('dataset', 'mpo train reads one dataset; submit a run (POST /runs) to train on several');
  return { data, mpoData };
}

/** The method from stage and pref_loss (MPO data under the DPO stage is trained with the MPO loss, as the official trainer does), its β, and full fine-tuning. */
function mapMethod(m: Mapping, data: { path: string; format: string | undefined }[], mpoData: boolean): void {
  const { take, cannot, config, hyperparameters } = m;
  const stage = take('stage') ?? D.stage;
  const prefLoss = take('pref_loss') ?? D.pref_loss;
  const beta = num(take('pref_beta')) ?? D.pref_beta;
  let method: string | undefined;
  if (stage === 'dpo' || stage === 'mpo') {
    if (stage === 'mpo' || mpoData) {
      // The official MPO trainer replaces the preference loss by the MPO loss for MPO data.
      if (stage === 'dpo' && prefLoss !== 'sigmoid')
        cannot(
          'pref_loss',
          `the MPO trainer computes the MPO loss; pref_loss "${String(prefLoss)}" has no meaning there`,
        );
      method = 'mpo';
      hyperparameters.beta = beta;
    } else if (prefLoss === 'sigmoid') {
      method = 'dpo';
      hyperparameters.beta = beta;
    } else if (prefLoss === 'ipo') {
      // LLaMA-Factory (TRL) passes pref_beta as IPO's τ.
      method = 'ipo';
      hyperparameters.tau = beta;
    } else cannot('pref_loss', `"${String(prefLoss)}" is not mapped (sigmoid → dpo, ipo → ipo)`);
    if (data.some((d) => d.format === undefined) && !mpoData && stage === 'dpo')
      cannot(
        'dataset',
        'cannot tell whether this file is MPO data (the official trainer then computes the MPO loss) or pairwise data (DPO)',
      );
  } else if (stage === 'sft') {
    method = 'sft';
  } else cannot('stage', `"${String(stage)}" is not supported (dpo, mpo, sft)`);
  if (method) config.method = method;
  const smoothing = num(take('dpo_label_smoothing'));
  if (smoothing) {
    if (method === 'dpo') hyperparameters.labelSmoothing = smoothing;
    else cannot('dpo_label_smoothing', `applies to DPO, not ${method ?? 'this stage'}`);
  }
  const ftx = num(take('pref_ftx'));
  if (ftx) cannot('pref_ftx', 'an SFT term added to the preference loss is not supported (set 0)');
  if (Object.keys(hyperparameters).length) config.hyperparameters = hyperparameters;

  const doTrain = take('do_train');
  if (doTrain === false) cannot('do_train', 'false: nothing to train');
  const finetuning = take('finetuning_type') ?? D.finetuning_type;
  if (finetuning !== 'full')
    cannot('finetuning_type', `"${String(finetuning)}": only full fine-tuning is supported`);
}

/** Template and sequence length (a run takes its template from its model), and the sample limit. */
function mapSequence(m: Mapping): void {
  const { take, cannot, ignore, run, training, config } = m;
  const template = take('template');
  if (template !== undefined) {
    const ours = LLAMAFACTORY_TEMPLATES[String(template)];
    if (!ours)
      cannot(
        'template',
        String(template) === 'qwen'
          ? 'LLaMA-Factory\'s "qwen" adds the system prompt "You are Qwen, created by Alibaba Cloud…"; ours ("qwen2") adds "You are a helpful assistant." – use template: qwen2 to accept that'
          : `"${String(template)}" has no equivalent (${Object.keys(LLAMAFACTORY_TEMPLATES).join(', ')})`,
      );
    else if (run)
      ignore('template', `a run uses the template its model's tokenizer implies (${ours} for this one)`);
    else config.template = ours;
  }
  const cutoff = num(take('cutoff_len')) ?? D.cutoff_len;
  if (run) training.cutoff = cutoff;
  else config.cutoff = cutoff;
  const maxSamples = num(take('max_samples'));
  if (maxSamples !== undefined) {
    if (run) ignore('max_samples', 'a run trains on the whole dataset');
    else config.data = { limit: maxSamples };
  }
}

/** Learning rate, epochs or steps, batch sizes, the schedule, seed and AdamW's settings. */
function mapOptimisation(m: Mapping): void {
  const { take, cannot, training } = m;
  training.learningRate = num(take('learning_rate')) ?? D.learning_rate;
  const epochs = num(take('num_train_epochs')) ?? D.num_train_epochs;
  if (!Number.isInteger(epochs)) cannot('num_train_epochs', `${epochs}: only whole epochs are supported`);
  else training.epochs = epochs;
  const maxSteps = num(take('max_steps'));
  if (maxSteps !== undefined && maxSteps > 0) training.maxSteps = maxSteps;
  const perDevice = num(take('per_device_train_batch_size')) ?? D.per_device_train_batch_size;
  const accumulation = num(take('gradient_accumulation_steps')) ?? D.gradient_accumulation_steps;
  // One optimizer step sees per_device × accumulation examples per rank (our batchSize is per step).
  training.batchSize = perDevice * accumulation;
  training.microBatchSize = perDevice;
  const scheduler = take('lr_scheduler_type') ?? D.lr_scheduler_type;
  if (scheduler !== 'cosine')
    cannot('lr_scheduler_type', `"${String(scheduler)}": only cosine with linear warm-up is implemented`);
  training.warmupRatio = num(take('warmup_ratio')) ?? D.warmup_ratio;
  const warmupSteps = num(take('warmup_steps'));
  if (warmupSteps) cannot('warmup_steps', 'warm-up is a ratio of the steps here (use warmup_ratio)');
  const seed = num(take('seed'));
  if (seed !== undefined) training.seed = seed;
  // Optimizer settings: the run spec's training block is the training config's (train-config.ts), so both carry them.
  const optimizer: [string, string][] = [
    ['weight_decay', 'weightDecay'],
    ['max_grad_norm', 'maxGradNorm'],
    ['adam_beta1', 'adamBeta1'],
    ['adam_beta2', 'adamBeta2'],
    ['adam_epsilon', 'adamEps'],
  ];
  for (const [field, ours] of optimizer) {
    const v = num(take(field));
    if (v !== undefined) training[ours] = v;
  }
  const optim = take('optim');
  if (optim !== undefined && !/^adamw/.test(String(optim)))
    cannot('optim', `"${String(optim)}": the optimizer is AdamW`);
}

/** bf16 / fp16 (a run trains in the agent's precision). */
function mapPrecision(m: Mapping): void {
  const { take, cannot, ignore, run, config } = m;
  const bf16 = take('bf16') === true;
  const fp16 = take('fp16') === true;
  if (bf16 && fp16) cannot('bf16', 'bf16 and fp16 together');
  if (bf16 || fp16) {
    if (run) ignore(bf16 ? 'bf16' : 'fp16', 'a run trains in the agent’s precision (float32 on CPU)');
    else config.dtype = bf16 ? 'bfloat16' : 'float16';
  }
}

/** Output folder and checkpoints. */
function mapOutput(m: Mapping): void {
  const { take, cannot, ignore, run, training, config } = m;
  const output = take('output_dir');
  if (typeof output === 'string') {
    if (run) ignore('output_dir', 'a run writes under the agents’ artifact root');
    else config.output = output;
  }
  const saveStrategy = take('save_strategy') ?? D.save_strategy;
  const saveSteps = num(take('save_steps')) ?? D.save_steps;
  if (saveStrategy === 'no') training.checkpointEvery = 0;
  else if (saveStrategy === 'steps') training.checkpointEvery = saveSteps;
  else cannot('save_strategy', `"${String(saveStrategy)}": checkpoints are every N steps (steps or no)`);
  const limit = num(take('save_total_limit'));
  if (limit !== undefined) {
    if (run) ignore('save_total_limit', 'a run keeps its default number of checkpoints');
    else training.keepCheckpoints = limit;
  }
}

/**
 * A run spec from a LLaMA-Factory YAML: the mapped fields, plus what a run
 * needs that the YAML does not say (one trial, the paper's languages unless
 * given, evaluation on reward gap and MultiJail).
 */
export function runSpecFromLlamaFactory(
  raw: Record<string, unknown>,
  opts: Omit<LlamaFactoryOptions, 'target'> & {
    name?: string;
    targetLanguages?: string[];
    dominantLanguage?: string;
  } = {},
): LlamaFactoryResult {
  const r = fromLlamaFactory(raw, { ...opts, target: 'run' });
  const output =
    typeof raw.output_dir === 'string' ? raw.output_dir.replace(/\/+$/, '').split('/').pop() : '';
  const dataset = typeof raw.dataset === 'string' ? raw.dataset : 'data';
  const spec: Record<string, unknown> = {
    name: opts.name ?? (output || `${String(r.config.method ?? 'run')} on ${dataset}`),
    dominantLanguage: opts.dominantLanguage ?? PAPER_DOMINANT_LANGUAGE,
    targetLanguages: opts.targetLanguages ?? [...PAPER_TARGET_LANGUAGES],
    search: { strategy: 'grid', space: {}, metric: 'loss', mode: 'min' },
    eval: { benchmarks: ['reward-gap', 'multijail'] },
    ...r.config,
  };
  return { ...r, config: spec };
}

/** A data file's format from its name and first bytes (MPO JSON, pairwise or pre-tokenized JSONL, alpaca); undefined when unclear. */
export function dataFormatOfHead(path: string, head: string): string | undefined {
  if (path.endsWith('.jsonl')) return /"prompt_ids"\s*:/.test(head) ? 'pretokenized' : 'pairwise';
  if (/"source_chosen"\s*:|"target_chosen"\s*:/.test(head)) return 'mpo';
  if (/"chosen"\s*:/.test(head)) return 'pairwise';
  if (/"instruction"\s*:/.test(head)) return 'alpaca';
  return undefined;
}
