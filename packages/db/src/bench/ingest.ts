// Metrics ingestion into Postgres: rows/s for batch sizes 100..5,000, through
// MetricRepository.append (one unnest() statement on the pg pool) and, in the
// same run, through Prisma's createMany (how append wrote before).
// Usage: npm run bench -w @mpo/db [-- --rows 50000 --repeats 3 --json]
// Each measurement appends `rows` fresh metric rows to a scratch trial; the
// median over `repeats` is reported. The scratch run is deleted afterwards.
import { parseArgs } from 'node:util';
import { createDb, createPrismaClient, type MetricInput } from '../index.js';

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
const prisma = createPrismaClient();
const viaCreateMany = async (data: MetricInput[], batch: number) => {
  for (let i = 0; i < data.length; i += batch)
    await prisma.metric.createMany({ data: data.slice(i, i + batch), skipDuplicates: true });
};
const { run } = await db.runs.create({
  name: 'bench-ingest',
  spec: { bench: 'metrics-ingest' },
  trials: [{ hyperparameters: {} }],
});
const trialId = run.trials[0]!.id;
let stepBase = 0;
try {
  for (const [path, write] of [
    ['append', (d: MetricInput[], b: number) => db.metrics.append(d, b)],
    ['createMany', viaCreateMany],
  ] as const)
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
        await write(data, batch);
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        rates.push(rows / seconds);
      }
      const result = { path, batchSize: batch, rows, repeats, rowsPerSec: Math.round(median(rates)) };
      process.stdout.write(
        values.json
          ? `${JSON.stringify(result)}\n`
          : `${path.padEnd(10)} batch ${String(batch).padStart(5)}: ${result.rowsPerSec} rows/s (median of ${repeats})\n`,
      );
    }
} finally {
  await db.runs.delete(run.id);
  await db.close();
  await prisma.$disconnect();
}
