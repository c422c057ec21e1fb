// Tokenizers and chat templates.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BYTE_SPECIALS,
  ByteTokenizer,
  encodeChat,
  encodePair,
  guessTemplate,
  HfTokenizer,
  loadTokenizer,
  renderChat,
  stopTokenIds,
} from '../src/index.js';
import { goldenDir } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpo-engine-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// GPT-2's byte -> unicode table (what ByteLevel BPE vocabularies are written in).
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => {
    out[b] = String.fromCharCode(cs[i]!);
  });
  return out;
}

// A small byte-level BPE tokenizer.json in the format transformers writes (Qwen2-style specials).
function smallTokenizerJson() {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  b2u.forEach((ch, i) => {
    vocab[ch] = i;
  });
  const merges = ['h e', 'l l', 'Ġ t', 'Ġt he', 'he ll', 'hell o'];
  for (const m of merges) vocab[m.replace(' ', '')] = Object.keys(vocab).length;
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const base = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, k) => ({
      id: base + k,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
const tokConfig = {
  eos_token: '<|im_end|>',
  pad_token: '<|endoftext|>',
  bos_token: null,
  clean_up_tokenization_spaces: false,
};

describe('ByteTokenizer', () => {
  const t = new ByteTokenizer();
  it('maps text to UTF-8 bytes and back, with the fixed specials', () => {
    expect(t.vocabSize).toBe(264);
    expect([t.bosId, t.eosId, t.padId]).toEqual([256, 257, 258]);
    expect(t.encode('hé')).toEqual([104, 0xc3, 0xa9]);
    expect(t.encode('hi', { addSpecialTokens: true })).toEqual([256, 104, 105]);
    expect(t.decode([256, 0xe4, 0xbd, 0xa0, 0xe5, 0xa5, 0xbd, 257])).toBe('<bos>你好<eos>');
    expect(t.decode([256, 104, 105, 262], { skipSpecialTokens: true })).toBe('hi');
    expect(t.encode('a<eos>b<|user|>', { parseSpecial: true })).toEqual([97, 257, 98, 259]);
    expect(t.encode('a<eos>b')).toEqual([...Buffer.from('a<eos>b')]);
    expect(t.tokenToId('<|assistant|>')).toBe(260);
  });
});

describe('HfTokenizer over a tokenizer.json', () => {
  const t = new HfTokenizer(smallTokenizerJson(), tokConfig);
  it('encodes with merges and byte fallback, decodes back, and recognises special tokens', () => {
    const ids = t.encode('hello the');
    expect(ids.length).toBe(2); // "hello", "Ġthe"
    expect(t.decode(ids)).toBe('hello the');
    const zh = '安全 ok!';
    expect(t.decode(t.encode(zh))).toBe(zh);
    const im = t.tokenToId('<|im_start|>')!;
    const end = t.tokenToId('<|im_end|>')!;
    const chat = t.encode('<|im_start|>user\nhello<|im_end|>');
    expect(chat[0]).toBe(im);
    expect(chat[chat.length - 1]).toBe(end);
    expect(t.eosId).toBe(end);
    expect(t.bosId).toBeUndefined();
    expect(t.vocabSize).toBe(256 + 6 + 3);
    expect(t.decode(chat, { skipSpecialTokens: true })).toBe('user\nhello');
  });

  it('loadTokenizer reads tokenizer.json from a model directory', async () => {
    const dir = join(tmp, 'hf');
    mkdirSync(dir);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(smallTokenizerJson()));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokConfig));
    const t2 = await loadTokenizer(dir);
    expect(t2.kind).toBe('hf');
    expect(t2.encode('hello the')).toEqual(t.encode('hello the'));
    expect(guessTemplate('Qwen2ForCausalLM', t2)).toBe('qwen2');
  });

  it('encodePair with the qwen2 template: prompt through the assistant header, response + <|im_end|>', () => {
    const { promptIds, responseIds } = encodePair(t, 'qwen2', 'hello', 'the hello');
    const text = renderChat('qwen2', [{ role: 'user', content: 'hello' }], { addGenerationPrompt: true });
    expect(t.decode(promptIds)).toBe(text);
    expect(t.decode(responseIds)).toBe('the hello<|im_end|>');
    expect(responseIds[responseIds.length - 1]).toBe(t.tokenToId('<|im_end|>'));
    expect(stopTokenIds(t, 'qwen2')).toEqual([t.tokenToId('<|im_end|>')]);
  });
});

describe('loadTokenizer for byte-level models', () => {
  it('recognises a ByteTokenizer tokenizer_config.json and a tokenizer-less byte model', async () => {
    const dir = join(tmp, 'byte');
    mkdirSync(dir);
    await ByteTokenizer.save(dir);
    expect((await loadTokenizer(dir)).kind).toBe('byte');
    const g = await loadTokenizer(goldenDir);
    expect(g.kind).toBe('byte');
    expect(g.vocabSize).toBe(320);
    expect(g.bosId).toBe(256);
    await expect(loadTokenizer(join(tmp, 'nothing'))).rejects.toThrow(/no tokenizer\.json/);
  });
});

describe('chat templates', () => {
  const conv = [
    { role: 'system' as const, content: 'Be safe.' },
    { role: 'user' as const, content: ' How do I stay safe? ' },
  ];
  it('llama3', () => {
    expect(renderChat('llama3', conv, { addGenerationPrompt: true })).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe safe.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHow do I stay safe?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });
  it('qwen2 (ChatML, default system prompt when none is given)', () => {
    expect(renderChat('qwen2', [{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(renderChat('qwen2', conv)).toBe(
      '<|im_start|>system\nBe safe.<|im_end|>\n<|im_start|>user\n How do I stay safe? <|im_end|>\n',
    );
  });
  it('gemma (system folded into the first user turn, assistant is "model")', () => {
    expect(
      renderChat('gemma', [...conv, { role: 'assistant', content: 'Carefully.' }], {
        addGenerationPrompt: true,
      }),
    ).toBe(
      '<bos><start_of_turn>user\nBe safe.\n\nHow do I stay safe?<end_of_turn>\n' +
        '<start_of_turn>model\nCarefully.<end_of_turn>\n<start_of_turn>model\n',
    );
  });
  it('plain', () => {
    expect(renderChat('plain', conv, { addGenerationPrompt: true })).toBe(
      'Be safe.\n\nHow do I stay safe?\n\n',
    );
    const t = new ByteTokenizer();
    expect(encodeChat(t, 'plain', [{ role: 'user', content: 'hi' }])).toEqual([256, 104, 105]);
  });
  it('byte: ids with role specials; pairs end with <|end|>', () => {
    const t = new ByteTokenizer();
    expect(renderChat('byte', [{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toEqual([
      BYTE_SPECIALS['<bos>'],
      BYTE_SPECIALS['<|user|>'],
      104,
      105,
      BYTE_SPECIALS['<|end|>'],
      BYTE_SPECIALS['<|assistant|>'],
    ]);
    const { promptIds, responseIds } = encodePair(t, 'byte', 'hi', 'no');
    expect(promptIds).toEqual([256, 259, 104, 105, 262, 260]);
    expect(responseIds).toEqual([110, 111, 262]);
    expect(stopTokenIds(t, 'byte').sort()).toEqual([257, 262]);
  });
  it('rejects unknown templates', () => {
    expect(() => renderChat('vicuna' as never, conv)).toThrow(/unknown chat template 'vicuna'/);
  });
});
