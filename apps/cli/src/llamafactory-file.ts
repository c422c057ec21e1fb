// A LLaMA-Factory YAML given to `mpo train`: mapped by @mpo/queue's
// fromLlamaFactory, with data files sniffed next to the config, ignored fields
// listed on stderr and fields we cannot honour refused with their line.
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  dataFormatOfHead,
  fromLlamaFactory,
  isLlamaFactoryConfig,
  locateProblems,
  type ParsedConfig,
} from '@mpo/queue';
import { CliError, ExitCode } from './exit-codes.js';

function head(path: string, bytes = 64 * 1024): string | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(bytes);
      return buf.subarray(0, readSync(fd, buf, 0, bytes, 0)).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/** Our config from a LLaMA-Factory YAML, or null when the document is not one. */
export function fromLlamaFactoryFile(
  doc: ParsedConfig,
  path: string,
  warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Record<string, unknown> | null {
  if (!isLlamaFactoryConfig(doc.value)) return null;
  const base = dirname(path);
  const r = fromLlamaFactory(doc.value, {
    target: 'train',
    dataFormatOf: (p) => {
      const file = isAbsolute(p) ? p : resolve(base, p);
      const text = head(file);
      return text === undefined ? undefined : dataFormatOfHead(file, text);
    },
  });
  if (r.problems.length)
    throw new CliError(
      `LLaMA-Factory config: fields we cannot honour:\n  ${locateProblems(doc, r.problems).join('\n  ')}`,
      ExitCode.invalidInput,
    );
  if (r.ignored.length)
    warn(`${path}: LLaMA-Factory fields ignored (${r.ignored.length}):\n  ${r.ignored.join('\n  ')}`);
  return r.config;
}
