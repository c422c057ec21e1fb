import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuiltinData } from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { buildTestbed, testbedExamples } from '../src/testbed.js';
import { alpacaHeldOut } from '../src/utility.js';

describe('testbed (builtin:tiny-multilingual)', () => {
  it('trains on refusals in English and compliance in the targets, never on held-out prompts', () => {
    const { examples, counts, heldOutGroups } = testbedExamples({ seed: 1, out: '/unused' });
    expect(counts.english).toBeGreaterThan(300);
    expect(counts.target).toBeGreaterThan(300);
    expect(counts.alpaca).toBeGreaterThan(1000);
    expect(heldOutGroups.length).toBe(10);
    const ids = new Set(examples.map((e) => e.id));
    // Held-out alpaca items (the utility metric's) are not trained on.
    for (const lang of ['en', 'zh']) {
      for (const id of alpacaHeldOut(resolveBuiltinData(`builtin:alpaca-${lang}`).path).heldOutIds) {
        expect(ids.has(id), id).toBe(false);
      }
    }
  });

  it('rebuilds to the same bytes from the same seed', async () => {
    const build = async () => {
      const out = mkdtempSync(join(tmpdir(), 'mpo-testbed-'));
      const r = await buildTestbed({
        seed: 7,
        out,
        threads: 1,
        training: { maxSteps: 2, batchSize: 4, microBatchSize: 2 },
      });
      return { hash: r.weightsHash, file: readFileSync(join(out, 'model.safetensors')) };
    };
    const [a, b] = [await build(), await build()];
    expect(a.hash).toBe(b.hash);
    expect(a.file.equals(b.file)).toBe(true);
  });
});
