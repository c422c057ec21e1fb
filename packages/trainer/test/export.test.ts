// The exported folder against what transformers' loaders read. The expectations are written from
// transformers itself, not from our writer:
// - file names: CONFIG_NAME, SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, GENERATION_CONFIG_NAME
//   (transformers/utils/__init__.py) and the tokenizer files of tokenization_utils_base
//   (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, FULL_TOKENIZER_FILE);
// - sharding: shards named "model-00001-of-0000N.safetensors" and an index
//   {"metadata": {"total_size"}, "weight_map": {tensor: file}} (modeling_utils.save_pretrained);
// - config fields: the __init__ arguments of LlamaConfig / Qwen2Config that the architecture needs;
// - tensor names: the state_dict keys of LlamaForCausalLM / Qwen2ForCausalLM.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LlamaConfig, Model, readCheckpointTensors } from '@mpo/engine';
import { describe, expect, it } from 'vitest';
import { exportHfFolder, parseTrainConfig, runTraining } from '../src/index.js';
import { byteEncoders, mpoData, tinyModel, tmp } from './helpers.js';

const CONFIG_FIELDS = [
  'architectures',
  'model_type',
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'hidden_act',
  'max_position_embeddings',
  'rms_norm_eps',
  'rope_theta',
  'tie_word_embeddings',
  'torch_dtype',
];

/** LlamaForCausalLM.state_dict() keys (+ q/k/v biases for Qwen2). */
function expectedTensorNames(layers: number, opts: { bias: boolean; tied: boolean }): string[] {
  const names = ['model.embed_tokens.weight', 'model.norm.weight'];
  if (!opts.tied) names.push('lm_head.weight');
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    for (const m of ['q', 'k', 'v', 'o']) names.push(`${p}.self_attn.${m}_proj.weight`);
    if (opts.bias) for (const m of ['q', 'k', 'v']) names.push(`${p}.self_attn.${m}_proj.bias`);
    for (const m of ['gate', 'up', 'down']) names.push(`${p}.mlp.${m}_proj.weight`);
    names.push(`${p}.input_layernorm.weight`, `${p}.post_attention_layernorm.weight`);
  }
  return names.sort();
}

const tiny = tinyModel(3).init as unknown as LlamaConfig;

function sourceFolderFiles(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    'tokenizer.json': JSON.stringify({ version: '1.0', model: { type: 'WordLevel', vocab: { a: 0 } } }),
    'tokenizer_config.json': JSON.stringify({
      tokenizer_class: 'PreTrainedTokenizerFast',
      eos_token: '<eos>',
    }),
    'special_tokens_map.json': JSON.stringify({ eos_token: '<eos>' }),
    'generation_config.json': JSON.stringify({ bos_token_id: 256, eos_token_id: [257], temperature: 0.6 }),
  };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return files;
}

describe('export folder for Hugging Face loaders', () => {
  for (const arch of ['LlamaForCausalLM', 'Qwen2ForCausalLM'] as const) {
    it(`${arch}: sharded weights + index, config fields, generation config, tokenizer files`, async () => {
      const src = tmp('export-src');
      const files = sourceFolderFiles(src);
      const cfg: LlamaConfig = { ...tiny, architecture: arch, attentionBias: arch === 'Qwen2ForCausalLM' };
      const m = await Model.init(cfg, { seed: 4, threads: 1 });
      const out = join(tmp('export'), 'final');
      // ~24 KB of fp32 weights in 10 KB shards: several files.
      await exportHfFolder(m, out, { sourceDir: src, maxShardBytes: 10_000 });

      const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
      expect(Object.keys(index).sort()).toEqual(['metadata', 'weight_map']);
      const shards = [...new Set(Object.values(index.weight_map as Record<string, string>))].sort();
      expect(shards.length).toBeGreaterThan(1);
      shards.forEach((f, i) => {
        expect(f).toBe(
          `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`,
        );
        expect(existsSync(join(out, f))).toBe(true);
      });
      expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
      const tensors = await readCheckpointTensors(out);
      expect([...tensors.keys()].sort()).toEqual(
        expectedTensorNames(cfg.numHiddenLayers, { bias: arch === 'Qwen2ForCausalLM', tied: false }),
      );
      const total = [...tensors.values()].reduce((a, t) => a + t.nbytes, 0);
      expect(index.metadata.total_size).toBe(total);
      expect(total).toBe(m.numParameters * 4);

      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      for (const k of CONFIG_FIELDS) expect(config, k).toHaveProperty(k);
      expect(config.model_type).toBe(arch === 'LlamaForCausalLM' ? 'llama' : 'qwen2');
      expect(config.architectures).toEqual([arch]);

      for (const [f, text] of Object.entries(files)) expect(readFileSync(join(out, f), 'utf8'), f).toBe(text);

      // The engine reads the sharded folder back bit for bit.
      const back = await Model.load(out, { threads: 1 });
      expect(back.weightsHash()).toBe(m.weightsHash());
      back.dispose();
      m.dispose();
    });
  }

  it('below the limit: one model.safetensors and no index; a re-export removes stale shards', async () => {
    const m = await Model.init(tiny, { seed: 4, threads: 1 });
    const out = tmp('export-one');
    await exportHfFolder(m, out, { sourceDir: null, maxShardBytes: 10_000 });
    await exportHfFolder(m, out, { sourceDir: null });
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'model.safetensors.index.json'))).toBe(false);
    expect(existsSync(join(out, 'model-00001-of-00003.safetensors'))).toBe(false);
    // No source: GenerationConfig.from_model_config's token ids, and the byte tokenizer marker.
    const gen = JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'));
    expect(gen).toMatchObject({ bos_token_id: 256, eos_token_id: 257, pad_token_id: 258 });
    expect(JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')).tokenizer_class).toBe(
      'ByteTokenizer',
    );
    m.dispose();
  });

  it('a training run from a folder exports that folder tokenizer and generation config', async () => {
    const src = tmp('export-train-src');
    const init = await Model.init(tiny, { seed: 3, threads: 1 });
    await init.save(src);
    init.dispose();
    const files = sourceFolderFiles(src);
    const out = tmp('export-train');
    const r = await runTraining(
      parseTrainConfig({
        model: src,
        data: { format: 'mpo', path: mpoData, limit: 4 },
        method: 'mpo',
        hyperparameters: { beta: 1.0 },
        cutoff: 64,
        output: out,
        threads: 1,
        training: { batchSize: 2, microBatchSize: 2, learningRate: 1e-3, maxSteps: 1, seed: 1 },
      }),
      { encoders: byteEncoders },
    );
    for (const [f, text] of Object.entries(files))
      expect(readFileSync(join(r.finalDir!, f), 'utf8'), f).toBe(text);
    expect(existsSync(join(r.finalDir!, 'config.json'))).toBe(true);
    expect(existsSync(join(r.finalDir!, 'model.safetensors'))).toBe(true);
  });
});
