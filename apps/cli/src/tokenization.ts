// Prompt/response encoders for text data: the model's tokenizer plus the
// config's chat template. Pre-tokenized data needs none.
import type { Encoders } from '@mpo/data';
import type { TrainConfig } from '@mpo/trainer';
import { CliError, ExitCode } from './exit-codes.js';

export function encodersFor(config: TrainConfig): Encoders | undefined {
  if (config.data.format === 'pretokenized') return undefined;
  throw new CliError(`data.format ${config.data.format}: tokenizers are not wired yet`, ExitCode.failure);
}

export function resolveBuiltinModel(id: string): string {
  throw new CliError(`unknown builtin model ${id}`, ExitCode.notFound);
}
