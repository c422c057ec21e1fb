// Builds the engine's score batches for one objective group from examples.
import type { SequenceSpec } from '@mpo/objectives';
import type { ScoreBatch } from './model.js';
import type { PairIds, TrainExample } from './types.js';

export class MissingSequenceError extends Error {
  constructor(exampleId: string, what: string) {
    super(`example ${exampleId}: the objective needs ${what}, which this dataset does not provide`);
    this.name = 'MissingSequenceError';
  }
}

function pairOf(ex: TrainExample, pair: SequenceSpec['pair']): PairIds {
  if (pair === 'target') return ex.target;
  if (pair === 'dominant') {
    if (!ex.dominant) throw new MissingSequenceError(ex.id, 'a dominant-language pair');
    return ex.dominant;
  }
  const other = ex.others?.[pair.language];
  if (!other) throw new MissingSequenceError(ex.id, `the same prompt's pair in language "${pair.language}"`);
  return other;
}

/** prompt ++ response for one example and sequence spec. */
export function sequenceOf(ex: TrainExample, spec: SequenceSpec): { ids: number[]; promptLength: number } {
  const pair = pairOf(ex, spec.pair);
  let response: number[];
  if (spec.response === 'chosen') response = pair.chosen;
  else if (spec.response === 'rejected') response = pair.rejected;
  else {
    if (!ex.mismatched) throw new MissingSequenceError(ex.id, 'a mismatched completion (KL partner)');
    response = ex.mismatched;
  }
  return { ids: [...pair.prompt, ...response], promptLength: pair.prompt.length };
}

export function buildBatch(examples: readonly TrainExample[], spec: SequenceSpec): ScoreBatch {
  const sequences: number[][] = [];
  const promptLengths: number[] = [];
  for (const ex of examples) {
    const s = sequenceOf(ex, spec);
    sequences.push(s.ids);
    promptLengths.push(s.promptLength);
  }
  return { sequences, promptLengths };
}

/** Tokens a batch feeds through the model (for tokens/s). */
export const batchTokens = (b: ScoreBatch) => b.sequences.reduce((n, s) => n + s.length, 0);
