// LLaMA-Factory training YAML, as the official MPO repository writes it
// (examples/train_mpo/llama3.1_mpo.yaml, copied field for field), mapped to
// our training config and run spec.
import { describe, expect, it } from 'vitest';
import { locateProblems, parseConfigText } from '../src/config-text.js';
import {
  dataFormatOfHead,
  fromLlamaFactory,
  isLlamaFactoryConfig,
  LLAMAFACTORY_DEFAULTS,
  PAPER_TARGET_LANGUAGES,
  runSpecFromLlamaFactory,
} from '../src/llamafactory.js';
import { validateRunSpec } from '../src/validate.js';

const OFFICIAL_LLAMA = `model_name_or_path: /your_path/Llama-3.1-8B-Instruct
stage: dpo
do_train: true
do_eval: false
finetuning_type: full
deepspeed: examples/deepspeed/ds_z2_config.json
pref_beta: 1.0
pref_loss: sigmoid
dataset: llama_mpo_data
template: llama3.1
cutoff_len: 1024
max_samples: 100000
overwrite_cache: true
preprocessing_num_workers: 16
output_dir: saves/llama3.1-8b/your_path
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
learning_rate: 6.0e-07
num_train_epochs: 2
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
save_only_model: true
save_strategy: 'no'
`;

const parse = (text: string) => parseConfigText(text, 'mpo.yaml');
const lf = (text: string) => parse(text).value as Record<string, unknown>;

describe('fromLlamaFactory (mpo train)', () => {
  it('maps the official MPO YAML: stage dpo on MPO data is MPO with beta = pref_beta', () => {
    const raw = lf(OFFICIAL_LLAMA);
    expect(isLlamaFactoryConfig(raw)).toBe(true);
    const r = fromLlamaFactory(raw, { target: 'train' });
    expect(r.problems).toEqual([]);
    expect(r.config).toEqual({
      model: '/your_path/Llama-3.1-8B-Instruct',
      method: 'mpo',
      hyperparameters: { beta: 1.0 },
      template: 'llama3',
      cutoff: 1024,
      data: { path: 'builtin:mpo-llama', format: 'mpo', limit: 100000 },
      training: {
        learningRate: 6e-7,
        epochs: 2,
        batchSize: 1,
        microBatchSize: 1,
        warmupRatio: 0.1,
        checkpointEvery: 0,
      },
      dtype: 'bfloat16',
      output: 'saves/llama3.1-8b/your_path',
    });
    // Every field left out is named, with why.
    expect(r.ignored.map((l) => l.split(':')[0]).sort()).toEqual(
      [
        'ddp_timeout',
        'deepspeed',
        'do_eval',
        'logging_steps',
        'overwrite_cache',
        'overwrite_output_dir',
        'plot_loss',
        'preprocessing_num_workers',
        'save_only_model',
      ].sort(),
    );
  });

  it('fills what the YAML leaves out with LLaMA-Factory / transformers defaults, not ours', () => {
    const r = fromLlamaFactory(
      lf(
        'model_name_or_path: m\nstage: dpo\nfinetuning_type: full\ndataset: gemma_mpo_data\nlr_scheduler_type: cosine\n',
      ),
      { target: 'train' },
    );
    expect(r.problems).toEqual([]);
    expect(r.config).toMatchObject({
      method: 'mpo',
      hyperparameters: { beta: LLAMAFACTORY_DEFAULTS.pref_beta },
      cutoff: 1024,
      training: {
        learningRate: 5e-5,
        epochs: 3,
        warmupRatio: 0,
        batchSize: 8,
        microBatchSize: 8,
        checkpointEvery: 500,
      },
    });
    // LLaMA-Factory's defaults themselves: finetuning_type lora and a linear schedule are refused.
    const d = fromLlamaFactory(lf('model_name_or_path: m\nstage: dpo\ndataset: llama_mpo_data\n'), {
      target: 'train',
    });
    expect(d.problems.map((p) => p.path).sort()).toEqual(['finetuning_type', 'lr_scheduler_type']);
  });

  it('refuses what it cannot honour, each with the line of its field', () => {
    const text = OFFICIAL_LLAMA.replace('finetuning_type: full', 'finetuning_type: lora')
      .replace('lr_scheduler_type: cosine', 'lr_scheduler_type: linear')
      .replace('num_train_epochs: 2', 'num_train_epochs: 2.5')
      .replace('template: llama3.1', 'template: qwen')
      .replace("save_strategy: 'no'", 'save_strategy: epoch\nwarmup_steps: 10\npref_ftx: 0.5');
    const doc = parse(text);
    const r = fromLlamaFactory(doc.value as Record<string, unknown>, { target: 'train' });
    const lines = locateProblems(doc, r.problems);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^mpo\.yaml:5:\d+: finetuning_type: "lora": only full fine-tuning/),
        expect.stringMatching(/^mpo\.yaml:24:\d+: lr_scheduler_type: "linear": only cosine/),
        expect.stringMatching(/^mpo\.yaml:23:\d+: num_train_epochs: 2\.5: only whole epochs/),
        expect.stringMatching(/^mpo\.yaml:10:\d+: template: LLaMA-Factory's "qwen" adds the system prompt/),
        expect.stringMatching(/save_strategy: "epoch"/),
        expect.stringMatching(/warmup_steps: warm-up is a ratio/),
        expect.stringMatching(/pref_ftx: an SFT term/),
      ]),
    );
    expect(r.problems).toHaveLength(7);
  });

  it('tells MPO data from pairwise data for stage dpo, and refuses when it cannot', () => {
    const base = 'model_name_or_path: m\nstage: dpo\nfinetuning_type: full\nlr_scheduler_type: cosine\n';
    const pairwise = fromLlamaFactory(lf(`${base}dataset: data/pairs.jsonl\npref_beta: 0.2\n`), {
      target: 'train',
      dataFormatOf: () => 'pairwise',
    });
    expect(pairwise.config).toMatchObject({ method: 'dpo', hyperparameters: { beta: 0.2 } });
    const ipo = fromLlamaFactory(lf(`${base}dataset: d.jsonl\npref_loss: ipo\npref_beta: 0.3\n`), {
      target: 'train',
      dataFormatOf: () => 'pairwise',
    });
    expect(ipo.config).toMatchObject({ method: 'ipo', hyperparameters: { tau: 0.3 } });
    const unknown = fromLlamaFactory(lf(`${base}dataset: mystery.json\n`), { target: 'train' });
    expect(unknown.problems.map((p) => p.reason)).toEqual([expect.stringMatching(/cannot tell whether/)]);
    const named = fromLlamaFactory(lf(`${base}dataset: alpaca_en\n`), { target: 'train' });
    expect(named.problems[0]?.reason).toMatch(/dataset_info\.json lookups are not supported/);
    expect(dataFormatOfHead('x.json', '[{"source_chosen": "a"')).toBe('mpo');
    expect(dataFormatOfHead('x.jsonl', '{"prompt_ids": [1]')).toBe('pretokenized');
  });
});

describe('runSpecFromLlamaFactory (POST /runs)', () => {
  it("makes a valid one-trial run spec from the official YAML, with the paper's languages", () => {
    const r = runSpecFromLlamaFactory(
      lf(OFFICIAL_LLAMA.replace('/your_path/Llama-3.1-8B-Instruct', 'llama-1b')),
    );
    expect(r.problems).toEqual([]);
    expect(r.config).toMatchObject({
      name: 'your_path',
      method: 'mpo',
      hyperparameters: { beta: 1 },
      dominantLanguage: 'en',
      targetLanguages: [...PAPER_TARGET_LANGUAGES],
      data: [{ path: 'builtin:mpo-llama', format: 'mpo' }],
      training: {
        learningRate: 6e-7,
        epochs: 2,
        batchSize: 1,
        microBatchSize: 1,
        cutoff: 1024,
        warmupRatio: 0.1,
      },
    });
    // A run cannot set template, precision, sample cap or output: named as ignored.
    for (const f of ['template', 'bf16', 'max_samples', 'output_dir'])
      expect(
        r.ignored.some((l) => l.startsWith(`${f}:`)),
        f,
      ).toBe(true);
    const v = validateRunSpec(r.config, { modelRoot: '/m', dataRoot: '/d', mustExist: false });
    expect(v.ok ? [] : v.problems).toEqual([]);
    expect(v.ok && v.trials).toHaveLength(1);
  });

  it('maps optimizer settings into the run spec, whose training block is the training config', () => {
    const base = OFFICIAL_LLAMA.replace('/your_path/Llama-3.1-8B-Instruct', 'llama-1b');
    const r = runSpecFromLlamaFactory(lf(`${base}weight_decay: 0.01\nmax_grad_norm: 0.5\n`));
    expect(r.problems).toEqual([]);
    expect(r.config.training).toMatchObject({ weightDecay: 0.01, maxGradNorm: 0.5 });
    const v = validateRunSpec(r.config, { modelRoot: '/m', dataRoot: '/d', mustExist: false });
    expect(v.ok && v.spec.training).toMatchObject({ weightDecay: 0.01, maxGradNorm: 0.5 });
  });
});
