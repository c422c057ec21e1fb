// Chat templates: the prompt formats of the model families the project trains, written out by hand
// (no Jinja). For a (prompt, response) preference pair the prompt is rendered with the generation
// prompt and the response is the assistant text followed by the token that ends a turn, so a model
// trained on it learns to stop.
import { BYTE_SPECIALS, type Tokenizer } from './tokenizer.js';

export type ChatTemplate = 'llama3' | 'qwen2' | 'gemma' | 'plain' | 'byte';
export const CHAT_TEMPLATES: readonly ChatTemplate[] = ['llama3', 'qwen2', 'gemma', 'plain', 'byte'];

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface RenderOptions {
  /** Append the header of an assistant turn (what a model continues from). */
  addGenerationPrompt?: boolean;
}

const QWEN2_DEFAULT_SYSTEM = 'You are a helpful assistant.';

/**
 * Render messages as the template's text; for the 'byte' template, as token ids (its turn markers
 * are special ids with no text form that could collide with user text).
 */
export function renderChat(template: 'byte', messages: ChatMessage[], opts?: RenderOptions): number[];
export function renderChat(
  template: Exclude<ChatTemplate, 'byte'>,
  messages: ChatMessage[],
  opts?: RenderOptions,
): string;
export function renderChat(
  template: ChatTemplate,
  messages: ChatMessage[],
  opts?: RenderOptions,
): string | number[];
export function renderChat(
  template: ChatTemplate,
  messages: ChatMessage[],
  opts: RenderOptions = {},
): string | number[] {
  const gen = opts.addGenerationPrompt ?? false;
  switch (template) {
    case 'llama3': {
      // Meta-Llama-3-Instruct: <|begin_of_text|> then headers; content is trimmed.
      let s = '<|begin_of_text|>';
      for (const m of messages)
        s += `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content.trim()}<|eot_id|>`;
      if (gen) s += '<|start_header_id|>assistant<|end_header_id|>\n\n';
      return s;
    }
    case 'qwen2': {
      // ChatML, with Qwen2's default system message when none is given.
      let s = '';
      if (messages[0]?.role !== 'system') s += `<|im_start|>system\n${QWEN2_DEFAULT_SYSTEM}<|im_end|>\n`;
      for (const m of messages) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
      if (gen) s += '<|im_start|>assistant\n';
      return s;
    }
    case 'gemma': {
      // Gemma has no system role: a system message is prepended to the first user turn.
      let s = '<bos>';
      let pendingSystem = '';
      for (const m of messages) {
        if (m.role === 'system') {
          pendingSystem += `${m.content.trim()}\n\n`;
          continue;
        }
        const role = m.role === 'assistant' ? 'model' : 'user';
        const content = role === 'user' ? pendingSystem + m.content.trim() : m.content.trim();
        if (role === 'user') pendingSystem = '';
        s += `<start_of_turn>${role}\n${content}<end_of_turn>\n`;
      }
      if (gen) s += '<start_of_turn>model\n';
      return s;
    }
    case 'plain': {
      // No markup: turns separated by blank lines (for base models). BOS is added by encodeChat.
      const parts = messages.map((m) => m.content.trim());
      return parts.join('\n\n') + (gen && parts.length ? '\n\n' : '');
    }
    case 'byte': {
      const role = {
        system: BYTE_SPECIALS['<|system|>'],
        user: BYTE_SPECIALS['<|user|>'],
        assistant: BYTE_SPECIALS['<|assistant|>'],
      };
      const ids: number[] = [BYTE_SPECIALS['<bos>']];
      for (const m of messages)
        ids.push(role[m.role], ...Buffer.from(m.content, 'utf8'), BYTE_SPECIALS['<|end|>']);
      if (gen) ids.push(BYTE_SPECIALS['<|assistant|>']);
      return ids;
    }
    default:
      throw new Error(`unknown chat template '${String(template)}' (known: ${CHAT_TEMPLATES.join(', ')})`);
  }
}

/** The text (or id, for 'byte') that closes an assistant turn. */
function turnEnd(template: ChatTemplate, tok: Tokenizer): { text?: string; ids?: number[] } {
  switch (template) {
    case 'llama3':
      return { text: '<|eot_id|>' };
    case 'qwen2':
      return { text: '<|im_end|>' };
    case 'gemma':
      return { text: '<end_of_turn>' };
    case 'plain':
      return tok.eosId !== undefined ? { ids: [tok.eosId] } : {};
    case 'byte':
      return { ids: [BYTE_SPECIALS['<|end|>']] };
  }
}

/** Token ids of a rendered conversation. */
export function encodeChat(
  tok: Tokenizer,
  template: ChatTemplate,
  messages: ChatMessage[],
  opts: RenderOptions = {},
): number[] {
  if (template === 'byte') return renderChat('byte', messages, opts);
  const ids = tok.encode(renderChat(template, messages, opts));
  if (template === 'plain' && tok.bosId !== undefined) ids.unshift(tok.bosId);
  return ids;
}

/**
 * Prompt ids and response ids of a (prompt, response) pair: the prompt rendered up to and including
 * the assistant header, the response as the assistant text plus the end-of-turn token. The scored
 * sequence is promptIds ++ responseIds with promptLength = promptIds.length.
 */
export function encodePair(
  tok: Tokenizer,
  template: ChatTemplate,
  prompt: string | ChatMessage[],
  response: string,
): { promptIds: number[]; responseIds: number[] } {
  const messages: ChatMessage[] = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
  const promptIds = encodeChat(tok, template, messages, { addGenerationPrompt: true });
  const end = turnEnd(template, tok);
  const body =
    template === 'llama3' || template === 'gemma' || template === 'plain' ? response.trim() : response;
  let responseIds: number[];
  if (template === 'byte') responseIds = [...Buffer.from(body, 'utf8')];
  else responseIds = tok.encode(body + (end.text ?? ''));
  if (end.ids) responseIds.push(...end.ids);
  return { promptIds, responseIds };
}

/** Ids that end generation for a template: its end-of-turn token and the tokenizer's EOS. */
export function stopTokenIds(tok: Tokenizer, template: ChatTemplate): number[] {
  const end = turnEnd(template, tok);
  const ids = new Set<number>();
  if (end.text) {
    const id = tok.tokenToId(end.text);
    if (id !== undefined) ids.add(id);
  }
  for (const id of end.ids ?? []) ids.add(id);
  if (tok.eosId !== undefined) ids.add(tok.eosId);
  return [...ids];
}

/** A template guessed from a model's architecture and tokenizer (override when you know better). */
export function guessTemplate(architecture: string, tok: Tokenizer): ChatTemplate {
  if (tok.kind === 'byte') return 'byte';
  if (tok.tokenToId('<|im_start|>') !== undefined) return 'qwen2';
  if (tok.tokenToId('<|start_header_id|>') !== undefined) return 'llama3';
  if (tok.tokenToId('<start_of_turn>') !== undefined) return 'gemma';
  if (architecture === 'Gemma2ForCausalLM') return 'gemma';
  return architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'plain';
}
