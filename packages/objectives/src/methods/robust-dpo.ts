// Robust DPO (Chowdhury et al. 2024), TRL loss_type="robust": unbiased DPO under label-flip noise rate ε.
import { defineObjective, referenceMarginLoss, targetPairRequests } from '../define.js';
import { logSigmoid, sigmoid } from '../math.js';
import { referenceTargetPair } from './dpo.js';

export interface RobustDpoHparams {
  beta: number;
  epsilon: number;
}

// Registry name `rdpo` (kept: configs and sweeps name it).
export const robustDpo = defineObjective<RobustDpoHparams>({
  name: 'rdpo',
  description: 'rDPO: [(1−ε)·L(w,l) − ε·L(l,w)]/(1−2ε), L(w,l) = −log σ(βh)',
  schema: [
    { name: 'beta', kind: 'number', default: 0.1, min: 0, minExclusive: true, description: 'β, KL strength' },
    {
      name: 'epsilon',
      kind: 'number',
      default: 0.1,
      min: 0,
      max: 0.5,
      maxExclusive: true,
      description: 'ε, assumed label-flip rate (TRL label_smoothing with loss_type="robust")',
    },
  ],
  // paper Table 7: ε ∈ [0.1, 0.5] (printed "[01, 0.5]"; ε = 0.5 divides by 1 − 2ε = 0, so the schema stops below it),
  // β ∈ [0.01, 0.05, 0.1]
  defaults: { beta: 0.1, epsilon: 0.1 },
  requirements: () => ({ policy: targetPairRequests(true), reference: referenceTargetPair }),
  compute(policy, reference, { beta, epsilon: eps }, batch) {
    const z = 1 - 2 * eps;
    // h = (log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l))   (summed log-probs)
    return referenceMarginLoss(policy, reference, { average: false, rewardBeta: beta, batch }, (h) => [
      // ℓ = [(1−ε)·(−log σ(βh)) − ε·(−log σ(−βh))] / (1−2ε)
      (-(1 - eps) * logSigmoid(beta * h) + eps * logSigmoid(-beta * h)) / z,
      // dℓ/dh = β·[−(1−ε)·σ(−βh) − ε·σ(βh)] / (1−2ε)
      (beta * (-(1 - eps) * sigmoid(-beta * h) - eps * sigmoid(beta * h))) / z,
    ]);
  },
});
