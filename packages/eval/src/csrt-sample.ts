// CSRT (github.com/haneul-yoo/csrt) states no licence, so the project does not ship it. Tests and
// smoke runs use a small file of the same format (id,category,en,csrt) made here from the committed
// MultiJail translations: each query is stitched from thirds of the same prompt in three languages,
// which is what CSRT's queries are (one harmful request, code-switched within the sentence).
import { writeFileSync } from 'node:fs';
import { resolveBuiltinBenchmark } from '@mpo/trainer';
import { loadMultiJail } from './benchmarks.js';

const MIX = ['en', 'zh', 'ko', 'ar', 'bn', 'sw'] as const;
const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** The k-th of three pieces of a text (split on spaces when it has them, else on characters). */
function third(text: string, k: number): string {
  const words = text.includes(' ') ? text.split(' ') : [...text];
  const per = Math.ceil(words.length / 3);
  return words.slice(k * per, (k + 1) * per).join(text.includes(' ') ? ' ' : '');
}

/** Writes `rows` CSRT-format rows to `path` (default 12) and returns the path. */
export function writeCsrtSample(path: string, rows = 12): string {
  const mj = loadMultiJail(resolveBuiltinBenchmark('builtin:multijail'), { languages: MIX });
  const lines = ['id,category,en,csrt'];
  for (let i = 0; i < Math.min(rows, mj.byLanguage.en!.length); i++) {
    const en = mj.byLanguage.en![i]!;
    const pieces = [0, 1, 2].map((k) => third(mj.byLanguage[MIX[(i + k) % MIX.length]!]![i]!.prompt, k));
    const category = `[${en.tags.map((t) => `'${t}'`).join(', ')}]`;
    lines.push([en.id, quote(category), quote(en.prompt), quote(pieces.join(' '))].join(','));
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}
