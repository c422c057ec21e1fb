// KTO (Ethayarajh et al. 2024), TRL KTOTrainer on a paired batch unpaired into n desirable + n undesirable examples.
import { defineObjective, targetPairLoss, targetPairRequests } from '../define.js';
import { positiveNumber } from '../hparams.js';
import { sigmoid } from '../math.js';
import { getGroup, getLogps } from '../scores.js';
import type { GroupRequest, ScoresByGroup } from '../types.js';
import { referenceTargetPair } from './dpo.js';

export interface KtoHparams {
  beta: number;
  desirableWeight: number;
  undesirableWeight: number;
}

const klRequest: GroupRequest = {
  group: 'klMismatched',
  sequence: { pair: 'target', response: 'mismatched' },
  sumLogp: true,
  grad: false,
};

export const kto = defineObjective<KtoHparams>({
  name: 'kto',
  description: 'KTO: λ_D·(1 − σ(β(ρ_w − z_ref))) and λ_U·(1 − σ(β(z_ref − ρ_l))), ρ = log π − log π_ref',
  schema: [
    positiveNumber('beta', 0.1, 'β, value-function scale'),
    {
      name: 'desirableWeight',
      kind: 'number',
      default: 1.0,
      min: 0,
      description: 'λ_D, weight of chosen examples',
    },
    {
      name: 'undesirableWeight',
      kind: 'number',
      default: 1.0,
      min: 0,
      description: 'λ_U, weight of rejected examples',
    },
  ],
  // paper Table 7: β ∈ [0.01, 0.1, 1.0], λ_w = λ_l (1.0: a paired batch has as many desirable as undesirable)
  defaults: { beta: 0.1, desirableWeight: 1.0, undesirableWeight: 1.0 },
  requirements: () => ({
    // The KL sequences are scored by the policy without gradient (TRL computes them under no_grad).
    policy: [...targetPairRequests(true), klRequest],
    reference: [...referenceTargetPair, klRequest],
  }),
  compute(policy, reference, { beta, desirableWeight: wd, undesirableWeight: wu }, batch) {
    // TRL's KTO uses summed log-probs.
    return targetPairLoss(policy, reference, { average: false, batch }, (p, dpc, dpr) => {
      const n = p.n;
      const z = klReference(policy, reference, n);
      let loss = 0;
      let rewC = 0;
      let rewR = 0;
      for (let i = 0; i < n; i++) {
        const rhoW = p.pc[i]! - p.rc[i]!;
        const rhoL = p.pr[i]! - p.rr[i]!;
        // desirable:   ℓ = λ_D·(1 − σ(x)), x = β(ρ_w − z),  dℓ/dρ_w = −λ_D·β·σ(x)σ(−x)
        const x = beta * (rhoW - z);
        // undesirable: ℓ = λ_U·(1 − σ(y)), y = β(z − ρ_l),  dℓ/dρ_l = +λ_U·β·σ(y)σ(−y)
        const y = beta * (z - rhoL);
        loss += wd * (1 - sigmoid(x)) + wu * (1 - sigmoid(y));
        // L is the mean over the 2n unpaired examples.
        dpc[i] = (-wd * beta * sigmoid(x) * sigmoid(-x)) / (2 * n);
        dpr[i] = (wu * beta * sigmoid(y) * sigmoid(-y)) / (2 * n);
        rewC += beta * rhoW;
        rewR += beta * rhoL;
      }
      return {
        loss: loss / (2 * n),
        metrics: {
          kl: z,
          'rewards/chosen': rewC / n,
          'rewards/rejected': rewR / n,
          'rewards/margins': (rewC - rewR) / n,
        },
      };
    });
  },
});

/**
 * z_ref = max(0, mean_j [log π(y'_j|x_j) − log π_ref(y'_j|x_j)]) over the mismatched pairs; a constant (no
 * gradient).
 */
function klReference(policy: ScoresByGroup, reference: ScoresByGroup, n: number): number {
  const pk = getLogps(getGroup(policy, 'policy', 'klMismatched', n), 'policy', 'klMismatched', false);
  const rk = getLogps(
    getGroup(reference, 'reference', 'klMismatched', n),
    'reference',
    'klMismatched',
    false,
  );
  let kl = 0;
  for (let j = 0; j < n; j++) kl += pk[j]! - rk[j]!;
  return Math.max(0, kl / n);
}
