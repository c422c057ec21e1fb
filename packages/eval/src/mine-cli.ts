// Phrase mining for the refusal detector: on the `mine` half of the MPO prompt groups, lists per response
// language the opening n-grams that are frequent in `*_chosen` (mostly refusals) and rare in `*_rejected`
// (mostly compliant). Its output is raw material: the phrase lists in phrases.ts were curated from it by hand.
// Usage: node dist/mine-cli.js [--data <mpo dir, default datasets/mpo>] [--lang ko] [--top 40]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DATASETS_DIR } from '@mpo/trainer';
import { loadMpoResponses, splitOfGroup } from './mpo-responses.js';
import { normalizeText } from './normalize.js';

const UNSPACED = new Set(['zh', 'ja', 'th']);

/** Tokens of the head of a response: words, or characters for scripts written without spaces. */
function headTokens(text: string, lang: string, chars: number): string[] {
  const head = normalizeText(text).slice(0, chars);
  return UNSPACED.has(lang) ? [...head.replace(/\s+/g, '')] : head.split(' ').filter(Boolean);
}

function ngrams(tokens: string[], lang: string): Set<string> {
  const joiner = UNSPACED.has(lang) ? '' : ' ';
  const [lo, hi] = UNSPACED.has(lang) ? [2, 8] : [1, 5];
  const out = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    for (let n = lo; n <= hi && i + n <= tokens.length; n++) {
      out.add(tokens.slice(i, i + n).join(joiner));
    }
  }
  return out;
}

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: join(DATASETS_DIR, 'mpo') },
    lang: { type: 'string' },
    top: { type: 'string', default: '40' },
    chars: { type: 'string', default: '160' },
  },
});
const top = Number(values.top);
const chars = Number(values.chars);
const pool = loadMpoResponses(values.data!).filter((r) => splitOfGroup(r.group) === 'mine');
const langs = [...new Set(pool.map((r) => r.lang))].filter((l) => !values.lang || l === values.lang).sort();
for (const lang of langs) {
  const items = pool.filter((r) => r.lang === lang);
  const pos = items.filter((r) => r.weakRefusal);
  const neg = items.filter((r) => !r.weakRefusal);
  const count = (set: typeof items) => {
    const m = new Map<string, number>();
    for (const r of set)
      for (const g of ngrams(headTokens(r.text, lang, chars), lang)) m.set(g, (m.get(g) ?? 0) + 1);
    return m;
  };
  const p = count(pos);
  const n = count(neg);
  // Score: support in chosen minus 3x support in rejected, so phrases that also open compliant answers sink.
  const ranked = [...p.entries()]
    .map(([g, c]) => ({ g, c, r: n.get(g) ?? 0 }))
    .filter((x) => x.c >= 3)
    .sort((a, b) => b.c - 3 * b.r - (a.c - 3 * a.r) || b.g.length - a.g.length)
    .slice(0, top);
  console.log(`\n## ${lang}: ${pos.length} chosen, ${neg.length} rejected (mine split)`);
  for (const x of ranked) console.log(`${String(x.c).padStart(4)} ${String(x.r).padStart(4)}  ${x.g}`);
}
