// LLaMA-Factory "sharegpt"-style messages: {from: human|gpt|system|user|assistant, value: string}.
import { DataError } from './errors.js';
import { isObject, kind } from './io.js';
import type { ChatMessage } from './types.js';

const ROLES: Record<string, ChatMessage['role']> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
};

export interface Where {
  file: string;
  line: number;
  /** e.g. "row 17" */
  row: string;
}

function fail(where: Where, msg: string): never {
  throw new DataError(`${where.row}: ${msg}`, where.file, where.line);
}

export function parseMessage(x: unknown, field: string, where: Where): ChatMessage {
  if (!isObject(x)) fail(where, `${field}: expected a {"from", "value"} message, got ${kind(x)}`);
  const role = typeof x.from === 'string' ? ROLES[x.from] : undefined;
  if (!role) fail(where, `${field}.from: expected human, gpt or system, got ${JSON.stringify(x.from)}`);
  if (typeof x.value !== 'string') fail(where, `${field}.value: expected a string, got ${kind(x.value)}`);
  return { role, content: x.value };
}

/** A message or a list of messages, as a list. */
export function parseMessages(x: unknown, field: string, where: Where): ChatMessage[] {
  if (Array.isArray(x)) return x.map((m, i) => parseMessage(m, `${field}[${i}]`, where));
  return [parseMessage(x, field, where)];
}

/** The single response of a ranking row's chosen/rejected field (a message, or a one-element list). */
export function parseResponse(x: unknown, field: string, where: Where): ChatMessage {
  const msgs = parseMessages(x, field, where);
  if (msgs.length !== 1) fail(where, `${field}: expected one response message, got ${msgs.length}`);
  return msgs[0]!;
}

/**
 * Splits a conversation into (history, system, prompt). Returns a reason string instead when it is not a
 * well-formed prompt: LLaMA-Factory drops those rows ("len(prompt) % 2 != 1"), and so do we, with the pair.
 */
export function splitPrompt(
  msgs: ChatMessage[],
): { prompt: string; history: ChatMessage[]; system?: string } | { unusable: string } {
  let system: string | undefined;
  let turns = msgs;
  if (turns[0]?.role === 'system') {
    system = turns[0].content;
    turns = turns.slice(1);
  }
  if (turns.length % 2 !== 1)
    return { unusable: `conversation has ${turns.length} turns; a prompt needs an odd number` };
  for (let i = 0; i < turns.length; i++) {
    const want = i % 2 === 0 ? 'user' : 'assistant';
    if (turns[i]!.role !== want) return { unusable: `turn ${i} is ${turns[i]!.role}, expected ${want}` };
  }
  const last = turns[turns.length - 1]!;
  return { prompt: last.content, history: turns.slice(0, -1), ...(system !== undefined ? { system } : {}) };
}
