// Held-out reward gap during training: RG = avgLogp(chosen) − avgLogp(rejected)
// of each held-out target pair under the current weights, averaged per
// language. Cheap (forward only, no grad), so sweeps compare trials on it at
// ASHA rungs.
import type { EvalMetrics } from './loop.js';
import type { TrainableModel } from './model.js';
import { buildBatch } from './sequences.js';
import type { TrainExample } from './types.js';

export async function heldOutRewardGap(
  model: TrainableModel,
  examples: readonly TrainExample[],
  chunk = 8,
): Promise<EvalMetrics> {
  const sum: Record<string, number> = {};
  const count: Record<string, number> = {};
  for (let i = 0; i < examples.length; i += chunk) {
    const exs = examples.slice(i, i + chunk);
    const c = await model.score(buildBatch(exs, { pair: 'target', response: 'chosen' }), { grad: false });
    const r = await model.score(buildBatch(exs, { pair: 'target', response: 'rejected' }), { grad: false });
    exs.forEach((ex, k) => {
      const rg = c.sumLogp[k]! / c.tokens[k]! - r.sumLogp[k]! / r.tokens[k]!;
      sum[ex.lang] = (sum[ex.lang] ?? 0) + rg;
      count[ex.lang] = (count[ex.lang] ?? 0) + 1;
    });
  }
  const perLang: Record<string, number> = {};
  for (const l of Object.keys(sum).sort()) perLang[l] = sum[l]! / count[l]!;
  const langs = Object.values(perLang);
  return {
    'heldout/reward_gap': perLang,
    // Mean over languages (each language weighs the same, as the paper's averages).
    'heldout/reward_gap_mean': langs.reduce((a, b) => a + b, 0) / Math.max(1, langs.length),
  };
}
