// Text to ids for training and evaluation: the model's tokenizer and a chat
// template, shaped as @mpo/data's prompt/response encoders.
import type { Encoders } from '@mpo/data';
import {
  ByteTokenizer,
  type ChatMessage,
  type ChatTemplate,
  encodeChat,
  encodePair,
  guessTemplate,
  loadTokenizer,
  type Tokenizer,
} from '@mpo/engine';

export interface Tokenization {
  tokenizer: Tokenizer;
  template: ChatTemplate;
  encoders: Encoders;
}

export function chatEncoders(tok: Tokenizer, template: ChatTemplate): Encoders {
  return {
    encodePrompt(prompt, ctx) {
      const messages: ChatMessage[] = [
        ...(ctx.system ? [{ role: 'system' as const, content: ctx.system }] : []),
        ...ctx.history,
        { role: 'user', content: prompt },
      ];
      return encodeChat(tok, template, messages, { addGenerationPrompt: true });
    },
    // The response's ids do not depend on the prompt (the template closes the
    // assistant turn with its end token), so any prompt serves here.
    encodeResponse: (response) => encodePair(tok, template, '', response).responseIds,
  };
}

/**
 * Tokenizer: `tokenizer` ("byte", or a folder/file with tokenizer.json), else
 * the model folder's own, else the byte tokenizer for a randomly initialised
 * model. Template: `template`, else guessed from the architecture and tokenizer.
 */
export async function resolveTokenization(opts: {
  modelDir: string | null;
  architecture: string;
  vocabSize: number;
  tokenizer?: string;
  template?: ChatTemplate;
}): Promise<Tokenization> {
  let tok: Tokenizer;
  if (opts.tokenizer === 'byte' || (!opts.tokenizer && !opts.modelDir))
    tok = new ByteTokenizer(opts.vocabSize);
  else tok = await loadTokenizer((opts.tokenizer ?? opts.modelDir)!.replace(/\/tokenizer\.json$/, ''));
  const template = opts.template ?? guessTemplate(opts.architecture, tok);
  return { tokenizer: tok, template, encoders: chatEncoders(tok, template) };
}
