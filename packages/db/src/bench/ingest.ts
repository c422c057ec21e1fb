// Metrics ingestion into Postgres: rows/s for createMany batch sizes 100..5,000.
// Usage: npm run bench -w @mpo/db [-- --rows 50000 --repeats 3 --json]
// Each measurement appends `rows` fresh metric rows to a scratch trial; the
// median over `repeats` is reported. The scratch run is deleted afterwards.
import { parseArgs } from 'node:util';
import { createDb } from '../index.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '50000' },
    repeats: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '100,500,1000,2000,5000' },
    json: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
const repeats = Number(values.repeats);
const sizes = values.sizes.split(',').map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const db = createDb();
const { run } = await db.runs.create({
  name: 'bench-ingest',
  spec: { bench: 'metrics-ingest' },
  trials: [{ hyperparameters: {} }],
});
const trialId = run.trials[0]!.id;
let stepBase = 0;
try {
  for (const batch of sizes) {
    const rates: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const data = Array.from({ length: rows }, (_, i) => ({
        trialId,
        step: stepBase + i,
        name: 'loss',
        language: i % 2 ? 'zh' : null,
        value: Math.random(),
      }));
      stepBase += rows;
      const t0 = process.hrtime.bigint();
      await db.metrics.append(data, batch);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      rates.push(rows / seconds);
    }
    const result = { batchSize: batch, rows, repeats, rowsPerSec: Math.round(median(rates)) };
    process.stdout.write(
      values.json
        ? `${JSON.stringify(result)}\n`
        : `batch ${String(batch).padStart(5)}: ${result.rowsPerSec} rows/s (median of ${repeats})\n`,
    );
  }
} finally {
  await db.runs.delete(run.id);
  await db.close();
}
