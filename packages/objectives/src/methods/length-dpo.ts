// R-DPO (Park et al. 2024, "Disentangling length from quality"): DPO with a length term inside the sigmoid.
import { defineObjective, referenceMarginLoss, targetPairRequests } from '../define.js';
import { logSigmoid, sigmoid } from '../math.js';
import { referenceTargetPair } from './dpo.js';

export interface LengthDpoHparams {
  beta: number;
  alpha: number;
}

// Registry name `r-dpo` (kept: configs and sweeps name it).
export const lengthDpo = defineObjective<LengthDpoHparams>({
  name: 'r-dpo',
  description: 'R-DPO: −log σ(βh + α(|y_w| − |y_l|)), h = DPO log-ratio margin',
  schema: [
    { name: 'beta', kind: 'number', default: 0.1, min: 0, minExclusive: true, description: 'β, KL strength' },
    {
      name: 'alpha',
      kind: 'number',
      default: 0.05,
      description:
        "α, length regularisation, +α(|y_w| − |y_l|) inside σ as in the paper's Table 7 and Park et al.: a positive α (the paper's grid) already grants a longer chosen response part of the margin, so the policy learns less from length and more from pairs whose chosen response is shorter; α = 0 is DPO, a negative α rewards verbosity",
    },
  ],
  // paper Table 7: α ∈ [0.05, 0.1, 0.5, 1.0], β ∈ [0.01, 0.05, 0.1]
  defaults: { beta: 0.1, alpha: 0.05 },
  requirements: () => ({ policy: targetPairRequests(true), reference: referenceTargetPair }),
  compute(policy, reference, { beta, alpha }, batch) {
    return referenceMarginLoss(policy, reference, { average: false, rewardBeta: beta, batch }, (h, i, p) => {
      // z = βh + α(|y_w| − |y_l|),  ℓ = −log σ(z),  dℓ/dh = −β·σ(−z)   (|y| is data, not differentiated)
      const zi = beta * h + alpha * (p.tc[i]! - p.tr[i]!);
      return [-logSigmoid(zi), -beta * sigmoid(-zi)];
    });
  },
});
