// Loaders for the safety benchmarks: MultiJail (315 prompts in 10 languages) and CSRT (the same prompts
// code-switched across languages in one query).
import { CsvError, columns, readCsv } from './csv.js';
import {
  DEFAULT_MULTIJAIL_LANGUAGES,
  isMultiJailLanguage,
  MULTIJAIL_LANGUAGES,
  type MultiJailLanguage,
} from './languages.js';

export interface BenchmarkPrompt {
  /** Benchmark row id (the `id` column), shared by the translations of one prompt. */
  id: string;
  /** Language of the prompt; `csrt` for code-switched CSRT queries. */
  lang: string;
  prompt: string;
  /** Harm categories (MultiJail `tags`, CSRT `category`). */
  tags: string[];
}

export interface MultiJailPrompt extends BenchmarkPrompt {
  lang: MultiJailLanguage;
  /** Where the English prompt came from (`anthropics` red-team data or `openai`). */
  source: string;
}

export interface MultiJailSet {
  languages: MultiJailLanguage[];
  /** Every selected (prompt, language), language-major in the order of `languages`, then by row. */
  prompts: MultiJailPrompt[];
  byLanguage: Partial<Record<MultiJailLanguage, MultiJailPrompt[]>>;
}

export interface MultiJailOptions {
  /** Which of the 10 languages to load; default the paper's en zh ko ar bn sw. */
  languages?: readonly string[];
}

/** The tags cells are Python list literals (`['violent', 'non-violent']`); read the quoted strings out. */
export function parseTags(cell: string): string[] {
  const t = cell.trim();
  if (!t) return [];
  if (!t.startsWith('[')) return [t];
  const out: string[] = [];
  for (const m of t.matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g)) {
    out.push((m[1] ?? m[2] ?? '').replace(/\\(.)/g, '$1'));
  }
  return out;
}

export function loadMultiJail(path: string, opts: MultiJailOptions = {}): MultiJailSet {
  const wanted = opts.languages ?? DEFAULT_MULTIJAIL_LANGUAGES;
  const bad = wanted.filter((l) => !isMultiJailLanguage(l));
  if (bad.length) {
    throw new RangeError(
      `unknown MultiJail language(s) ${bad.join(', ')}; choose from ${MULTIJAIL_LANGUAGES.join(' ')}`,
    );
  }
  const languages = [...new Set(wanted)] as MultiJailLanguage[];
  if (!languages.length) throw new RangeError('no MultiJail language selected');
  const table = readCsv(path);
  const col = columns(table, ['id', 'source', 'tags', ...languages] as const, path);
  const byLanguage: Partial<Record<MultiJailLanguage, MultiJailPrompt[]>> = {};
  for (const lang of languages) byLanguage[lang] = [];
  const seen = new Set<string>();
  for (const rec of table.records) {
    const id = rec.fields[col.id]!.trim();
    if (!id) throw new CsvError('empty id', path, rec.line);
    if (seen.has(id)) throw new CsvError(`duplicate id ${id}`, path, rec.line);
    seen.add(id);
    const source = rec.fields[col.source]!.trim();
    const tags = parseTags(rec.fields[col.tags]!);
    for (const lang of languages) {
      const prompt = rec.fields[col[lang]]!.trim();
      if (!prompt) throw new CsvError(`id ${id}: empty ${lang} prompt`, path, rec.line);
      byLanguage[lang]!.push({ id, lang, prompt, tags, source });
    }
  }
  return { languages, prompts: languages.flatMap((l) => byLanguage[l]!), byLanguage };
}

export interface CsrtPrompt extends BenchmarkPrompt {
  lang: 'csrt';
  /** The monolingual English original of the code-switched query. */
  en: string;
}

export function loadCsrt(path: string): CsrtPrompt[] {
  const table = readCsv(path);
  const col = columns(table, ['id', 'category', 'en', 'csrt'] as const, path);
  const seen = new Set<string>();
  return table.records.map((rec) => {
    const id = rec.fields[col.id]!.trim();
    if (!id) throw new CsvError('empty id', path, rec.line);
    if (seen.has(id)) throw new CsvError(`duplicate id ${id}`, path, rec.line);
    seen.add(id);
    const prompt = rec.fields[col.csrt]!.trim();
    if (!prompt) throw new CsvError(`id ${id}: empty csrt query`, path, rec.line);
    return {
      id,
      lang: 'csrt' as const,
      prompt,
      en: rec.fields[col.en]!.trim(),
      tags: parseTags(rec.fields[col.category]!),
    };
  });
}
