// Precision and recall of a refusal detector on the hand-labelled MPO sample (data/refusal-labels.json).
import type { RefusalDetector } from './detector.js';
import { loadMpoResponses } from './mpo-responses.js';
import type { HandLabel, LabelFile } from './refusal-sample.js';

export interface DetectorScore {
  lang: string;
  /** Labelled R / C (U items are not scored). */
  refusals: number;
  compliant: number;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  precision: number;
  recall: number;
  /** U items, and how many of them the detector called refusals. */
  unclear: number;
  unclearFlagged: number;
}

export interface DetectorMeasurement {
  perLanguage: DetectorScore[];
  overall: DetectorScore;
  /** Scored items the detector got wrong, for inspection. */
  errors: Array<{ key: string; lang: string; label: HandLabel; matched?: string }>;
}

const ratio = (a: number, b: number) => (b === 0 ? Number.NaN : a / b);

function score(lang: string, rows: Array<{ label: HandLabel; refusal: boolean }>): DetectorScore {
  const s = { tp: 0, fp: 0, fn: 0, tn: 0, unclear: 0, unclearFlagged: 0 };
  for (const r of rows) {
    if (r.label === 'U') {
      s.unclear++;
      if (r.refusal) s.unclearFlagged++;
    } else if (r.label === 'R') r.refusal ? s.tp++ : s.fn++;
    else r.refusal ? s.fp++ : s.tn++;
  }
  return {
    lang,
    refusals: s.tp + s.fn,
    compliant: s.fp + s.tn,
    ...s,
    precision: ratio(s.tp, s.tp + s.fp),
    recall: ratio(s.tp, s.tp + s.fn),
  };
}

/** Runs `detector` over every labelled response; languages are the response languages of the sample. */
export function measureDetector(
  detector: RefusalDetector,
  mpoDir: string,
  labels: LabelFile,
): DetectorMeasurement {
  const pool = new Map(loadMpoResponses(mpoDir).map((r) => [r.key, r]));
  const rows: Array<{ key: string; lang: string; label: HandLabel; refusal: boolean; matched?: string }> = [];
  for (const [key, label] of Object.entries(labels.labels)) {
    const r = pool.get(key);
    if (!r) throw new Error(`labelled response ${key} is not in the MPO data under ${mpoDir}`);
    // The detector gets the prompt's language as its hint, as it would when judging a benchmark response.
    const v = detector.detect(r.text, r.promptLang);
    rows.push({ key, lang: r.lang, label, refusal: v.refusal, ...(v.matched ? { matched: v.matched } : {}) });
  }
  // The sample's languages in a fixed order (the paper's, then the rest alphabetically).
  const order = ['en', 'zh', 'ko', 'ar', 'bn', 'sw'];
  const rank = (l: string) => (order.includes(l) ? order.indexOf(l) : order.length);
  const langs = [...new Set(rows.map((r) => r.lang))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return {
    perLanguage: langs.map((l) =>
      score(
        l,
        rows.filter((r) => r.lang === l),
      ),
    ),
    overall: score('all', rows),
    errors: rows
      .filter((r) => r.label !== 'U' && (r.label === 'R') !== r.refusal)
      .map(({ key, lang, label, matched }) => ({ key, lang, label, ...(matched ? { matched } : {}) })),
  };
}

/** The measurement as a markdown table. */
export function formatMeasurement(m: DetectorMeasurement): string {
  const f = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(3));
  const lines = [
    '| language | refusals (R) | compliant (C) | TP | FP | FN | precision | recall | unclear (U) | U flagged |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of [...m.perLanguage, m.overall]) {
    lines.push(
      `| ${s.lang} | ${s.refusals} | ${s.compliant} | ${s.tp} | ${s.fp} | ${s.fn} | ${f(s.precision)} | ${f(s.recall)} | ${s.unclear} | ${s.unclearFlagged} |`,
    );
  }
  return lines.join('\n');
}
