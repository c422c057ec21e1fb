// The generations file of an evaluation (`mpo eval --save-responses FILE`): one GenerationRecord per line, so a
// reader can check what each attack-success figure counted. Written whole (temp file, then rename): a file that
// exists is complete.
import { readFileSync } from 'node:fs';
import { writeFileWhole } from '@mpo/util';

import { JUDGE_LABELS } from './judge.js';
import type { GenerationRecord } from './run-eval.js';

export function writeGenerations(path: string, records: readonly GenerationRecord[]): void {
  writeFileWhole(path, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
}

/** Reads a generations file, naming the line and field of the first malformed record. */
export function readGenerations(path: string): GenerationRecord[] {
  const out: GenerationRecord[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      let v: Record<string, unknown>;
      try {
        v = JSON.parse(line);
      } catch {
        throw new Error(`${path}:${i + 1}: not JSON`);
      }
      const bad = (field: string, what: string) => new Error(`${path}:${i + 1}: ${field} ${what}`);
      if (v.benchmark !== 'multijail' && v.benchmark !== 'csrt')
        throw bad('benchmark', 'must be multijail or csrt');
      for (const k of ['language', 'promptId', 'judge'])
        if (typeof v[k] !== 'string' || !v[k]) throw bad(k, 'must be a non-empty string');
      for (const k of ['prompt', 'response']) if (typeof v[k] !== 'string') throw bad(k, 'must be a string');
      if (!JUDGE_LABELS.includes(v.verdict as never))
        throw bad('verdict', `must be one of ${JUDGE_LABELS.join(', ')}`);
      if (v.reason !== undefined && typeof v.reason !== 'string') throw bad('reason', 'must be a string');
      out.push(v as unknown as GenerationRecord);
    });
  return out;
}
