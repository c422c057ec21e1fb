// Tokenizers: a byte-level one for the project's own small models, and Hugging Face tokenizer.json
// through @huggingface/tokenizers for real checkpoints.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { errorMessage } from './errors.js';

export interface Tokenizer {
  readonly kind: 'byte' | 'hf';
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  /** Text to ids. Special-token strings in the text are recognised (HF) / only with parseSpecial (byte).
   *  addSpecialTokens (default false) runs the tokenizer's post-processor, e.g. adds BOS. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
}

export const BYTE_SPECIALS = {
  '<bos>': 256,
  '<eos>': 257,
  '<pad>': 258,
  '<|user|>': 259,
  '<|assistant|>': 260,
  '<|system|>': 261,
  '<|end|>': 262,
  '<|reserved|>': 263,
} as const;
export const BYTE_VOCAB_SIZE = 264;

/**
 * ids 0..255 are the UTF-8 bytes; 256.. are special tokens (BYTE_SPECIALS). A model may have a
 * larger vocabulary than 264 (the golden fixture has 320); ids past the specials decode to nothing.
 */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly bosId = BYTE_SPECIALS['<bos>'];
  readonly eosId = BYTE_SPECIALS['<eos>'];
  readonly padId = BYTE_SPECIALS['<pad>'];
  private readonly byId = new Map<number, string>(Object.entries(BYTE_SPECIALS).map(([k, v]) => [v, k]));
  private static readonly specialRe = new RegExp(
    Object.keys(BYTE_SPECIALS)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    'g',
  );

  constructor(readonly vocabSize: number = BYTE_VOCAB_SIZE) {
    if (vocabSize < BYTE_VOCAB_SIZE)
      throw new Error(`ByteTokenizer needs a vocabulary of at least ${BYTE_VOCAB_SIZE}`);
  }

  /** UTF-8 bytes of the text. parseSpecial: map special-token strings (e.g. "<eos>") to their ids. */
  encode(text: string, opts: { addSpecialTokens?: boolean; parseSpecial?: boolean } = {}): number[] {
    const out: number[] = opts.addSpecialTokens ? [this.bosId] : [];
    if (!opts.parseSpecial) {
      out.push(...Buffer.from(text, 'utf8'));
      return out;
    }
    let last = 0;
    for (const m of text.matchAll(ByteTokenizer.specialRe)) {
      out.push(...Buffer.from(text.slice(last, m.index), 'utf8'));
      out.push(BYTE_SPECIALS[m[0] as keyof typeof BYTE_SPECIALS]);
      last = m.index + m[0].length;
    }
    out.push(...Buffer.from(text.slice(last), 'utf8'));
    return out;
  }

  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    let s = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length) s += Buffer.from(bytes).toString('utf8');
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id >= 0 && id < 256) {
        bytes.push(id);
        continue;
      }
      flush();
      const sp = this.byId.get(id);
      if (sp && !opts.skipSpecialTokens) s += sp;
    }
    flush();
    return s;
  }

  tokenToId(token: string): number | undefined {
    return (BYTE_SPECIALS as Record<string, number>)[token];
  }

  /** Mark a model directory as byte-tokenized (what loadTokenizer looks for). */
  static async save(dir: string): Promise<void> {
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      `${JSON.stringify({ tokenizer_class: 'ByteTokenizer', bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>' }, null, 2)}\n`,
    );
  }
}

type TokenSpec = string | { content: string } | null | undefined;
const tokenText = (t: TokenSpec) => (typeof t === 'string' ? t : (t?.content ?? undefined));

/** A Hugging Face tokenizer.json (+ tokenizer_config.json) through @huggingface/tokenizers. */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly chatTemplate: string | undefined;
  private readonly tk: HfJsTokenizer;

  constructor(tokenizerJson: object, tokenizerConfig: Record<string, unknown> = {}) {
    this.tk = new HfJsTokenizer(tokenizerJson, tokenizerConfig);
    const vocab = this.tk.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    this.bosToken = tokenText(tokenizerConfig.bos_token as TokenSpec);
    this.eosToken = tokenText(tokenizerConfig.eos_token as TokenSpec);
    const pad = tokenText(tokenizerConfig.pad_token as TokenSpec);
    this.bosId = this.bosToken !== undefined ? this.tk.token_to_id(this.bosToken) : undefined;
    this.eosId = this.eosToken !== undefined ? this.tk.token_to_id(this.eosToken) : undefined;
    this.padId = pad !== undefined ? this.tk.token_to_id(pad) : undefined;
    this.chatTemplate =
      typeof tokenizerConfig.chat_template === 'string' ? tokenizerConfig.chat_template : undefined;
  }

  static async fromDir(dir: string): Promise<HfTokenizer> {
    const read = async (f: string) =>
      JSON.parse(await readFile(join(dir, f), 'utf8')) as Record<string, unknown>;
    let json: Record<string, unknown>;
    try {
      json = await read('tokenizer.json');
    } catch (e) {
      throw new Error(`${join(dir, 'tokenizer.json')}: ${errorMessage(e)}`);
    }
    const cfg = existsSync(join(dir, 'tokenizer_config.json')) ? await read('tokenizer_config.json') : {};
    return new HfTokenizer(json, cfg);
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tk.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false }).ids;
  }

  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tk.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.tk.token_to_id(token);
  }
}

/**
 * The tokenizer of a model directory: tokenizer.json when present; otherwise the byte tokenizer when
 * tokenizer_config.json says ByteTokenizer, or when there is no tokenizer file at all and the
 * model's vocabulary has room for the byte specials (the project's own byte-level models).
 */
export async function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  if (existsSync(join(modelDir, 'tokenizer.json'))) return HfTokenizer.fromDir(modelDir);
  const cfgPath = join(modelDir, 'tokenizer_config.json');
  const vocab = async () => {
    try {
      const c = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')) as { vocab_size?: number };
      return c.vocab_size;
    } catch {
      return undefined;
    }
  };
  if (existsSync(cfgPath)) {
    const c = JSON.parse(await readFile(cfgPath, 'utf8')) as { tokenizer_class?: string };
    if (c.tokenizer_class === 'ByteTokenizer')
      return new ByteTokenizer(Math.max(BYTE_VOCAB_SIZE, (await vocab()) ?? 0));
    throw new Error(
      `${modelDir}: tokenizer_config.json without tokenizer.json (class ${c.tokenizer_class ?? 'unknown'})`,
    );
  }
  const v = await vocab();
  if (v !== undefined && v >= BYTE_VOCAB_SIZE && v <= 1024) return new ByteTokenizer(v);
  throw new Error(`${modelDir}: no tokenizer.json (and not a byte-level model)`);
}
