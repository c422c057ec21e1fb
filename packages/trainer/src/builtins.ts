// Builtin ids for models and data that ship inside the repository, so configs
// and sweep specs can name them without knowing paths. Every id resolves under
// the repository root and nowhere else: data in datasets/ (datasets/README.md
// gives each file's origin, licence and sha256), the golden fixture with the
// engine's tests, the testbed model in models/.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The repository's data folder: builtin data ids resolve here. */
export const DATASETS_DIR = join(repoRoot, 'datasets');
/** The golden fixture (tiny random Llama + reference outputs), kept with the engine's tests. */
export const GOLDEN_LLAMA_DIR = join(repoRoot, 'packages/engine/test/fixtures/golden-llama');
const dataset = (rel: string) => () => join(DATASETS_DIR, rel);

export const BUILTIN_MODELS: Record<string, () => string> = {
  // The synthetic multilingual testbed (docs/testbed.md): rebuild with `mpo testbed build --seed 1`.
  'builtin:tiny-multilingual': () =>
    process.env.MPO_TESTBED_DIR ?? join(repoRoot, 'models', 'tiny-multilingual'),
  // The synthetic testbed with cross-lingual transfer (docs/testbed.md): English and three sister languages.
  'builtin:tiny-multilingual-transfer': () =>
    process.env.MPO_TRANSFER_TESTBED_DIR ?? join(repoRoot, 'models', 'tiny-multilingual-transfer'),
  // The golden fixture's tiny random Llama (for tests and smoke runs).
  'builtin:golden-llama': () => GOLDEN_LLAMA_DIR,
};

export const BUILTIN_DATA: Record<string, { path: () => string; format: 'mpo' | 'pretokenized' | 'alpaca' }> =
  {
    'builtin:mpo-llama': { path: dataset('mpo/llama_mpo_data.json'), format: 'mpo' },
    'builtin:mpo-gemma': { path: dataset('mpo/gemma_mpo_data.json'), format: 'mpo' },
    'builtin:mpo-qwen': { path: dataset('mpo/qwen_mpo_data.json'), format: 'mpo' },
    'builtin:alpaca-en': { path: dataset('general/alpaca_en_demo.json'), format: 'alpaca' },
    'builtin:alpaca-zh': { path: dataset('general/alpaca_zh_demo.json'), format: 'alpaca' },
    // Written by `mpo testbed build --testbed tiny-multilingual-transfer` beside its checkpoint.
    'builtin:mpo-transfer': {
      path: () => join(BUILTIN_MODELS['builtin:tiny-multilingual-transfer']!(), 'data', 'mpo-transfer.json'),
      format: 'mpo',
    },
    'builtin:golden-pairs': { path: () => join(GOLDEN_LLAMA_DIR, 'pairs.jsonl'), format: 'pretokenized' },
  };

/** Evaluation benchmark files (packages/eval reads them by these ids; they are not training data). */
export const BUILTIN_BENCHMARKS: Record<string, () => string> = {
  'builtin:multijail': dataset('multijail/MultiJail.csv'),
};

/**
 * CSRT (code-switching red-teaming) states no licence upstream, so the repository does not ship
 * it: a user downloads it and names its path (`mpo eval --csrt`, the eval config's `csrt.path`, or
 * this environment variable).
 */
export const CSRT_ENV = 'MPO_CSRT_PATH';
export const CSRT_SOURCE = 'data/csrt.csv from github.com/haneul-yoo/csrt @ 574574a';

export class UnknownBuiltinError extends Error {
  constructor(kind: 'model' | 'data' | 'benchmark', id: string, known: string[]) {
    super(`unknown builtin ${kind} ${id}; known: ${known.join(', ')}`);
    this.name = 'UnknownBuiltinError';
  }
}

/** The build line of each committed testbed: its testbed.json `rebuild` (the same bytes with --threads 1). */
const TESTBED_BUILDS: Record<string, string> = {
  'builtin:tiny-multilingual': 'mpo testbed build --testbed tiny-multilingual --seed 1',
  'builtin:tiny-multilingual-transfer':
    'mpo testbed build --testbed tiny-multilingual-transfer --seed 1 --init-seed 2 --threads 1',
};
export function resolveBuiltinModel(id: string): string {
  const f = BUILTIN_MODELS[id];
  if (!f) throw new UnknownBuiltinError('model', id, Object.keys(BUILTIN_MODELS));
  const dir = f();
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(
      `${id}: no model at ${dir}${TESTBED_BUILDS[id] ? ` (build it with \`${TESTBED_BUILDS[id]}\`)` : ''}`,
    );
  }
  return dir;
}

export function resolveBuiltinData(id: string): { path: string; format: 'mpo' | 'pretokenized' | 'alpaca' } {
  const d = BUILTIN_DATA[id];
  if (!d) throw new UnknownBuiltinError('data', id, Object.keys(BUILTIN_DATA));
  return { path: d.path(), format: d.format };
}

export function resolveBuiltinBenchmark(id: string): string {
  const f = BUILTIN_BENCHMARKS[id];
  if (!f) throw new UnknownBuiltinError('benchmark', id, Object.keys(BUILTIN_BENCHMARKS));
  return f();
}

/** One line of `mpo data list`. */
export interface CatalogEntry {
  id: string;
  kind: 'model' | 'data' | 'benchmark';
  path: string;
  /** Rows (data files) as datasets/manifest.json records them; null for models. */
  rows: number | null;
  /** Bytes on disk (a model: its weights file); null when the path is missing. */
  bytes: number | null;
  languages: string[];
  licence: string;
  exists: boolean;
}

const MADE_HERE =
  'made for this project by `mpo testbed build` from the MPO, alpaca and MultiJail data (their licences apply)';
/** Languages of the synthetic testbeds (docs/testbed.md); their checkpoints carry no manifest entry. */
const TESTBED_LANGUAGES: Record<string, string[]> = {
  'builtin:tiny-multilingual': ['en', 'zh', 'ko', 'ar', 'bn', 'sw', 'ja'],
  'builtin:tiny-multilingual-transfer': ['en', 'qaa', 'qab', 'qac'],
  'builtin:mpo-transfer': ['en', 'qaa', 'qab', 'qac'],
};
/** Builtin data written beside a testbed checkpoint by its build (hashed in its testbed.json). */
const TESTBED_DATA = new Set(['builtin:mpo-transfer']);

interface ManifestFile {
  path: string;
  rows: number | null;
  languages: string[];
  licence: string;
  sha256: string;
}

function manifestFiles(): Map<string, ManifestFile> {
  const m = JSON.parse(readFileSync(join(DATASETS_DIR, 'manifest.json'), 'utf8')) as {
    files: ManifestFile[];
  };
  return new Map(m.files.map((f) => [join(repoRoot, f.path), f]));
}

const bytesOf = (path: string) => (existsSync(path) ? statSync(path).size : null);

/** Every builtin id with where it resolves and, from datasets/manifest.json, its rows, languages and licence. */
export function builtinCatalog(): CatalogEntry[] {
  const files = manifestFiles();
  const fileEntry = (id: string, kind: CatalogEntry['kind'], path: string): CatalogEntry => {
    const f = files.get(path);
    return {
      id,
      kind,
      path,
      rows: f?.rows ?? null,
      bytes: bytesOf(path),
      languages: f?.languages ?? TESTBED_LANGUAGES[id] ?? [],
      licence: f?.licence ?? (TESTBED_DATA.has(id) ? MADE_HERE : 'not listed in datasets/manifest.json'),
      exists: existsSync(path),
    };
  };
  const models = Object.entries(BUILTIN_MODELS).map(([id, dir]): CatalogEntry => {
    const weights = join(dir(), 'model.safetensors');
    const f = files.get(weights);
    return {
      id,
      kind: 'model',
      path: dir(),
      rows: null,
      bytes: bytesOf(weights),
      languages: f?.languages ?? TESTBED_LANGUAGES[id] ?? [],
      licence: f?.licence ?? MADE_HERE,
      exists: existsSync(join(dir(), 'config.json')),
    };
  });
  return [
    ...models,
    ...Object.entries(BUILTIN_DATA).map(([id, d]) => fileEntry(id, 'data', d.path())),
    ...Object.entries(BUILTIN_BENCHMARKS).map(([id, p]) => fileEntry(id, 'benchmark', p())),
  ];
}

const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/**
 * The committed testbed checkpoints (models/ with a testbed.json): their weights, and the data files their
 * build wrote, against the sha256s that testbed.json records.
 */
function checkTestbeds(): string[] {
  const problems: string[] = [];
  for (const dirOf of Object.values(BUILTIN_MODELS)) {
    const dir = dirOf();
    const rel = (p: string) => {
      const r = relative(repoRoot, join(dir, p));
      return r.startsWith('..') ? join(dir, p) : r;
    };
    // A testbed committed in models/ must have its testbed.json; one built elsewhere (its env variable) is
    // checked when it has one; the golden fixture has none.
    if (!existsSync(join(dir, 'testbed.json'))) {
      if (dir.startsWith(join(repoRoot, 'models'))) problems.push(`${rel('testbed.json')}: missing`);
      continue;
    }
    const t = JSON.parse(readFileSync(join(dir, 'testbed.json'), 'utf8')) as {
      modelSafetensorsSha256?: string;
      files?: Record<string, string>;
    };
    const want = { 'model.safetensors': t.modelSafetensorsSha256 ?? '', ...t.files };
    for (const [p, sha] of Object.entries(want)) {
      if (!existsSync(join(dir, p))) problems.push(`${rel(p)}: missing`);
      else if (sha256Of(join(dir, p)) !== sha) problems.push(`${rel(p)}: sha256 differs from testbed.json`);
    }
  }
  return problems;
}

/**
 * Files of datasets/manifest.json, and of the committed testbeds (their testbed.json), that are missing or
 * whose bytes differ from their recorded sha256 (`mpo data list --check`; the Docker build runs it so an
 * image never ships without its data).
 */
export function checkDatasets(): string[] {
  const problems: string[] = [];
  for (const [path, f] of manifestFiles()) {
    if (!existsSync(path)) problems.push(`${f.path}: missing`);
    else if (sha256Of(path) !== f.sha256)
      problems.push(`${f.path}: sha256 differs from datasets/manifest.json`);
  }
  return [...problems, ...checkTestbeds()];
}
