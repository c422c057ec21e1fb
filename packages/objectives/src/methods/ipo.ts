// IPO (Azar et al. 2023), TRL loss_type="ipo": squared loss on per-token average log-probs.
import { defineObjective, referenceMarginLoss, targetPairRequests } from '../define.js';
import { positiveNumber } from '../hparams.js';
import { referenceTargetPair } from './dpo.js';

export interface IpoHparams {
  tau: number;
}

export const ipo = defineObjective<IpoHparams>({
  name: 'ipo',
  description: 'IPO: (h − 1/(2τ))², h = log-ratio margin on average log-probs',
  schema: [
    positiveNumber('tau', 0.1, 'τ, regularisation (TRL passes it as beta); the target margin is 1/(2τ)'),
  ],
  // paper Table 7: τ ∈ [0.01, 0.1, 0.5, 1.0]
  defaults: { tau: 0.1 },
  requirements: () => ({
    policy: targetPairRequests(true),
    reference: referenceTargetPair,
  }),
  compute(policy, reference, { tau }, batch) {
    const target = 1 / (2 * tau);
    // TRL averages log-probs over response tokens for IPO (and only for IPO among the DPO losses), and reports
    // rewards with β = τ.
    // h = (avg log π(y_w) − avg log π(y_l)) − (avg log π_ref(y_w) − avg log π_ref(y_l))
    return referenceMarginLoss(policy, reference, { average: true, rewardBeta: tau, batch }, (h) => {
      // ℓ = (h − 1/(2τ))²,  dℓ/dh = 2(h − 1/(2τ))
      const d = h - target;
      return [d * d, 2 * d];
    });
  },
});
