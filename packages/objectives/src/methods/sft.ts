// SFT: next-token NLL of the chosen response (TRL SFTTrainer with completion-only loss).
import { chosenNll, defineObjective } from '../define.js';
import { getGroup, getSumLogp, getTokens } from '../scores.js';

export type SftHparams = Record<string, never>;

export const sft = defineObjective<SftHparams>({
  name: 'sft',
  description: 'Supervised fine-tuning: NLL of the chosen response, averaged per token over the batch',
  schema: [],
  defaults: {},
  requirements: () => ({
    policy: [
      { group: 'targetChosen', sequence: { pair: 'target', response: 'chosen' }, sumLogp: true, grad: true },
    ],
    reference: [],
  }),
  compute(policy) {
    const g = getGroup(policy, 'policy', 'targetChosen');
    const s = getSumLogp(g, 'policy', 'targetChosen');
    const t = getTokens(g, 'policy', 'targetChosen');
    // L = −Σ_i log π(y_w,i|x_i) / Σ_i |y_w,i|
    const { nll, dSumLogp } = chosenNll(s, t);
    return {
      loss: nll,
      grads: { targetChosen: { sumLogp: new Float64Array(g.n).fill(dSumLogp) } },
      metrics: { loss: nll, nll },
    };
  },
});
