// The labelled sample the refusal detector is measured on. Items are drawn from the `eval` half of the MPO
// prompt groups only (phrases were mined on the other half), per response language, half from `*_chosen` and
// half from `*_rejected`, then labelled by hand: the field name is only a weak label (target-side labels are
// noisy by design, and even source-side "chosen" answers are sometimes safe advice rather than refusals).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type MpoResponse, splitOfGroup } from './mpo-responses.js';
import { normalizeText } from './normalize.js';

/** R: the response declines; C: it does what was asked (harmful or not); U: unclear, left out of the scores. */
export type HandLabel = 'R' | 'C' | 'U';

export interface LabelFile {
  description: string;
  labels: Record<string, HandLabel>;
}

export interface SampleOptions {
  languages?: readonly string[];
  /** Items per language drawn from `*_chosen` and again from `*_rejected`. */
  perClass?: number;
  seed?: string;
  /** Keys not to draw (an earlier sample), whose texts are skipped too. */
  exclude?: Iterable<string>;
}

/** The labelled samples under packages/eval/data: development (phrases revised after it), test (not). */
export const DEFAULT_LABEL_FILES = ['refusal-labels-dev.json', 'refusal-labels-test.json'] as const;

export const SAMPLE_LANGUAGES = ['en', 'zh', 'ko', 'ar', 'bn', 'sw', 'ja'] as const;

const rank = (seed: string, key: string) => createHash('sha256').update(`${seed}\n${key}`).digest('hex');

/**
 * Picks the items to label: per language and weak class, responses from the eval split in seeded-hash order,
 * taken round-robin over the source files so that all three models' styles are in, skipping texts already
 * taken (translations repeat across rows).
 */
export function drawRefusalSample(pool: readonly MpoResponse[], opts: SampleOptions = {}): MpoResponse[] {
  const seed = opts.seed ?? 'refusal-sample-v1';
  const per = opts.perClass ?? 40;
  const out: MpoResponse[] = [];
  const excluded = new Set(opts.exclude ?? []);
  const seen = new Set(pool.filter((r) => excluded.has(r.key)).map((r) => normalizeText(r.text)));
  for (const lang of opts.languages ?? SAMPLE_LANGUAGES) {
    for (const weak of [true, false]) {
      const cands = pool
        .filter((r) => r.lang === lang && r.weakRefusal === weak && splitOfGroup(r.group) === 'eval')
        .filter((r) => !excluded.has(r.key))
        .sort((a, b) => (rank(seed, a.key) < rank(seed, b.key) ? -1 : 1));
      const byFile = new Map<string, MpoResponse[]>();
      for (const r of cands) byFile.set(r.file, [...(byFile.get(r.file) ?? []), r]);
      const queues = [...byFile.values()];
      let taken = 0;
      while (taken < per && queues.some((q) => q.length)) {
        for (const q of queues) {
          const r = q.shift();
          if (!r || taken >= per) continue;
          const norm = normalizeText(r.text);
          if (seen.has(norm)) continue;
          seen.add(norm);
          out.push(r);
          taken++;
        }
      }
    }
  }
  return out;
}

export function readLabelFile(path: string): LabelFile {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as LabelFile;
  for (const [k, v] of Object.entries(raw.labels ?? {})) {
    if (v !== 'R' && v !== 'C' && v !== 'U')
      throw new Error(`${path}: label of ${k} must be R, C or U, got ${v}`);
  }
  return raw;
}
