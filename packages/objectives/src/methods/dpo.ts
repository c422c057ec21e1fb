// DPO, TRL loss_type="sigmoid" (Rafailov et al. 2023), on summed log-probs.
import { defineObjective, referenceMarginLoss, targetPairRequests } from '../define.js';
import { logSigmoid, sigmoid } from '../math.js';
import type { GroupRequest } from '../types.js';

export interface DpoHparams {
  beta: number;
  labelSmoothing: number;
}

export const referenceTargetPair: GroupRequest[] = [
  { group: 'targetChosen', sequence: { pair: 'target', response: 'chosen' }, sumLogp: true, grad: false },
  { group: 'targetRejected', sequence: { pair: 'target', response: 'rejected' }, sumLogp: true, grad: false },
];

export const dpo = defineObjective<DpoHparams>({
  name: 'dpo',
  description: 'DPO (sigmoid): −log σ(β·[(log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l))])',
  schema: [
    { name: 'beta', kind: 'number', default: 0.1, min: 0, minExclusive: true, description: 'β, KL strength' },
    {
      name: 'labelSmoothing',
      kind: 'number',
      default: 0,
      min: 0,
      max: 0.5,
      maxExclusive: true,
      description: 'cDPO label smoothing ε (TRL label_smoothing); 0 = plain DPO',
    },
  ],
  // paper Table 7: β ∈ [0.01, 0.05, 0.1]; label smoothing is not in the paper (0 = the paper's DPO)
  defaults: { beta: 0.1, labelSmoothing: 0 },
  requirements: () => ({ policy: targetPairRequests(true), reference: referenceTargetPair }),
  compute(policy, reference, { beta, labelSmoothing: ls }, batch) {
    // h = (log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l))
    return referenceMarginLoss(policy, reference, { average: false, rewardBeta: beta, batch }, (h) => [
      // ℓ = −(1−ε)·log σ(βh) − ε·log σ(−βh)
      -(1 - ls) * logSigmoid(beta * h) - ls * logSigmoid(-beta * h),
      // dℓ/dh = β·[−(1−ε)·σ(−βh) + ε·σ(βh)]   (d log σ(x)/dx = σ(−x))
      beta * (-(1 - ls) * sigmoid(-beta * h) + ls * sigmoid(beta * h)),
    ]);
  },
});
