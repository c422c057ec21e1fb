// eval-run.ts: the config an eval job hands to `mpo eval` (the run's benchmarks, its data for the reward gap).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evalConfig } from '../src/eval-run.js';
import { evalData, RUN_ID, rootsOf, scratch, TRIAL_ID } from './helpers.js';

describe('payload → eval config', () => {
  const s = scratch('eval-config');
  const roots = rootsOf(s);

  it("builds the eval config: trained weights, the run's benchmarks, MPO data for the reward gap", () => {
    expect(evalConfig(evalData(RUN_ID, TRIAL_ID), '/w/final', roots)).toEqual({
      model: '/w/final',
      benchmarks: ['multijail'],
      languages: ['en', 'zh'],
      maxPrompts: 5,
      judge: 'builtin',
      // the run's training cutoff for the reward gap (what the sweep's metric used), room for generation beside it
      cutoff: 64,
      benchmarkCutoff: 512,
      device: 'cpu',
      threads: 1,
    });
    const mpo = evalData(RUN_ID, TRIAL_ID, { data: [{ kind: 'builtin', id: 'mpo-qwen' }], cutoff: 4 });
    expect(evalConfig(mpo, '/w', roots)).toMatchObject({
      data: { path: 'builtin:mpo-qwen' },
      cutoff: 4,
      benchmarkCutoff: 512,
    });
    writeFileSync(join(s.dataRoot, 'mine.json'), '[{"source_chosen": "x"}]');
    const own = evalData(RUN_ID, TRIAL_ID, { data: [{ kind: 'path', path: 'mine.json' }] });
    expect(evalConfig(own, '/w', roots)).toMatchObject({ data: { path: join(s.dataRoot, 'mine.json') } });
  });
});
