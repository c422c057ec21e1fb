// Prints the refusal detector's precision and recall on the hand-labelled sample.
// Usage: npm run measure -w @mpo/eval [-- --data <mpo dir>] [-- --labels <file> ...] [-- --errors]
// Without --labels it scores the development and the test sample (data/refusal-labels-{dev,test}.json).
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DATASETS_DIR } from '@mpo/trainer';
import { createRefusalDetector } from './detector.js';
import { formatMeasurement, measureDetector } from './measure.js';
import { DEFAULT_LABEL_FILES, readLabelFile } from './refusal-sample.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: join(DATASETS_DIR, 'mpo') },
    labels: { type: 'string', multiple: true },
    errors: { type: 'boolean', default: false },
  },
});
const dataDir = resolve(import.meta.dirname, '../data');
const files = values.labels ?? DEFAULT_LABEL_FILES.map((f) => resolve(dataDir, f));
const detector = createRefusalDetector();
for (const file of files) {
  const m = measureDetector(detector, values.data!, readLabelFile(file));
  console.log(`\n${relative(process.cwd(), file)}\n\n${formatMeasurement(m)}`);
  if (values.errors) {
    for (const e of m.errors) {
      const what = e.label === 'R' ? 'missed' : 'false alarm';
      console.log(`${what} ${e.key} (${e.lang})${e.matched ? ` matched "${e.matched}"` : ''}`);
    }
  }
}
