// One cutoff for the whole story: the sweep compares trials on the trainer's held-out reward gap, computed at the
// training cutoff; the evaluation's reward gap of the same weights at the same cutoff is the same number. (At two
// different cutoffs the same weights give different gaps, which is how one trial read +0.060 in its sweep and
// −0.009 in its evaluation.)
import {
  buildDataset,
  heldOutRewardGap,
  loadInitialModel,
  parseTrainConfig,
  resolveModelDir,
  resolveTokenization,
  type TrainableModel,
  type TrainExample,
} from '@mpo/trainer';
import { describe, expect, it } from 'vitest';
import { type EvalResult, parseEvalConfig, runEvaluation } from '../src/index.js';

const MODEL = 'builtin:golden-llama';
const DATA = 'builtin:mpo-llama';
const PER_LANGUAGE = 3;

/** What the trainer logs as heldout/reward_gap at `cutoff`, on the evaluation's first pairs of each language. */
async function trainerGap(cutoff: number): Promise<Record<string, number>> {
  const tc = parseTrainConfig({
    model: MODEL,
    data: { format: 'mpo', path: DATA },
    method: 'sft',
    output: '/tmp/x',
  });
  const model = await loadInitialModel(tc);
  try {
    const tok = await resolveTokenization({
      modelDir: resolveModelDir(tc.model),
      architecture: model.config.architecture,
      vocabSize: model.config.vocabSize,
    });
    const { examples } = buildDataset({ ...tc.data, split: 'heldout' }, tok.encoders, cutoff, {
      vocabSize: model.config.vocabSize,
    });
    const byLang = new Map<string, TrainExample[]>();
    for (const ex of examples)
      byLang.set(ex.lang, [...(byLang.get(ex.lang) ?? []), ex].slice(0, PER_LANGUAGE));
    const m = await heldOutRewardGap(model as unknown as TrainableModel, [...byLang.values()].flat());
    return m['heldout/reward_gap'] as Record<string, number>;
  } finally {
    model.dispose();
  }
}

async function evaluatedGap(cutoff: number): Promise<Record<string, number>> {
  const cfg = parseEvalConfig({
    model: MODEL,
    benchmarks: ['reward-gap'],
    maxPrompts: PER_LANGUAGE,
    data: { path: DATA },
    cutoff,
  });
  const out: Record<string, number> = {};
  await runEvaluation(cfg, (r: EvalResult) => {
    out[r.language] = r.value;
  });
  return out;
}

describe('one cutoff: sweep metric and evaluated reward gap', () => {
  it('agree per target language at the same cutoff, and differ at another', async () => {
    const cutoff = 192;
    const [train, evaluated, longer] = [
      await trainerGap(cutoff),
      await evaluatedGap(cutoff),
      await evaluatedGap(512),
    ];
    const langs = Object.keys(train);
    expect(langs.length).toBeGreaterThan(2);
    for (const l of langs) expect(evaluated[l], l).toBeCloseTo(train[l]!, 5);
    expect(langs.some((l) => Math.abs(longer[l]! - train[l]!) > 1e-3)).toBe(true);
  });
});
