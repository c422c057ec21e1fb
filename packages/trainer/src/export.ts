// The final model folder, in the layout Hugging Face tools load with
// `AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`:
// config.json, the weights (sharded above a size limit, with an index),
// generation_config.json, and the source model's tokenizer files.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ByteTokenizer, eosIds, type LlamaConfig } from '@mpo/engine';

/**
 * The tokenizer files `PreTrainedTokenizerBase.save_pretrained` writes (and `from_pretrained`
 * reads): tokenizer.json (fast), tokenizer.model (SentencePiece), vocab.json + merges.txt (BPE),
 * the config, the special-token map, added tokens and the chat template file.
 */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
] as const;

export interface ExportableModel {
  readonly config: LlamaConfig;
  save(dir: string, opts?: { maxShardBytes?: number }): Promise<void>;
}

export interface ExportOptions {
  /** The folder the training started from; null for a random init (byte tokenizer). */
  sourceDir: string | null;
  /** Where the tokenizer files come from when not the source folder (a `tokenizer` config field). */
  tokenizerDir?: string | null;
  /** Weights above this many bytes are sharded (default: the engine's, 5 GB as transformers). */
  maxShardBytes?: number;
}

/** Writes the weights, config, generation config and tokenizer; returns the file names written. */
export async function exportHfFolder(
  model: ExportableModel,
  dir: string,
  opts: ExportOptions,
): Promise<string[]> {
  await model.save(dir, opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {});
  writeGenerationConfig(model.config, dir, opts.sourceDir);
  const tokenizerDir = opts.tokenizerDir === undefined ? opts.sourceDir : opts.tokenizerDir;
  if (tokenizerDir) copyTokenizerFiles(tokenizerDir, dir);
  if (!existsSync(join(dir, 'tokenizer_config.json'))) await ByteTokenizer.save(dir);
  return TOKENIZER_FILES.filter((f) => existsSync(join(dir, f)));
}

/** Copies every tokenizer file the source folder has; the model's files are never overwritten. */
export function copyTokenizerFiles(sourceDir: string, dir: string): string[] {
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    if (!existsSync(join(sourceDir, f))) continue;
    copyFileSync(join(sourceDir, f), join(dir, f));
    copied.push(f);
  }
  return copied;
}

/**
 * The source model's generation_config.json when it has one (its sampling defaults are the
 * model author's); otherwise what `GenerationConfig.from_model_config` derives from config.json:
 * the bos/eos/pad token ids.
 */
export function writeGenerationConfig(cfg: LlamaConfig, dir: string, sourceDir: string | null): void {
  const source = sourceDir ? join(sourceDir, 'generation_config.json') : null;
  if (source && existsSync(source)) {
    JSON.parse(readFileSync(source, 'utf8')); // a broken file fails here, not in the user's loader
    copyFileSync(source, join(dir, 'generation_config.json'));
    return;
  }
  const eos = eosIds(cfg);
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (cfg.bosTokenId !== undefined) gen.bos_token_id = cfg.bosTokenId;
  if (eos.length > 0) gen.eos_token_id = eos.length === 1 ? eos[0] : eos;
  if (cfg.padTokenId !== undefined) gen.pad_token_id = cfg.padTokenId;
  writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify(gen, null, 2)}\n`);
}
