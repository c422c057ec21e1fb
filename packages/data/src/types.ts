export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A preference pair in text form. */
export interface TextPair {
  /** The last user turn: what the response answers. */
  prompt: string;
  chosen: string;
  rejected: string;
  /** Earlier turns, oldest first (empty for single-turn data, which is all of the MPO data). */
  history: ChatMessage[];
  system?: string;
}

/** One row of the LLaMA-Factory MPO JSON: the same prompt's dominant-language and target-language pairs. */
export interface MpoRow {
  /** `${name}:${index}`, stable as long as the file is. */
  id: string;
  /** Position in the file. */
  index: number;
  /** Target language of `target`. */
  lang: string;
  /** Dominant language of `source` (the file's, e.g. en for llama/gemma, zh for qwen). */
  dominantLang: string;
  /** Prompt-group key: rows that are translations of one source prompt share it. */
  group: string;
  /** Dominant-language pair. */
  source: TextPair;
  /** Target-language pair. */
  target: TextPair;
}

export interface PairwiseRow extends TextPair {
  id: string;
  lang: string;
  group: string;
}

export interface SftRow {
  id: string;
  lang: string;
  group: string;
  prompt: string;
  response: string;
  history: ChatMessage[];
  system?: string;
}

/** Token ids of a preference pair; a scored sequence is exactly promptIds + chosenIds (or + rejectedIds). */
export interface TokenizedPair {
  promptIds: number[];
  chosenIds: number[];
  rejectedIds: number[];
}

export interface TokenizedPairRow extends TokenizedPair {
  id: string;
  lang: string;
  group: string;
  /** Set when truncation shortened the prompt or the responses. */
  truncated?: boolean;
}

export interface TokenizedMpoRow {
  id: string;
  index: number;
  lang: string;
  dominantLang: string;
  group: string;
  source: TokenizedPair;
  target: TokenizedPair;
  truncated?: { source: boolean; target: boolean };
}

export interface TokenizedSftRow {
  id: string;
  lang: string;
  group: string;
  promptIds: number[];
  responseIds: number[];
  truncated?: boolean;
}
