// SimPO (Meng et al. 2024): reference-free, length-normalised margin loss. Pure SimPO: no NLL term.
import { defineObjective, targetPairLoss, targetPairRequests } from '../define.js';
import { positiveNumber } from '../hparams.js';
import { logSigmoid, sigmoid } from '../math.js';

export interface SimpoHparams {
  beta: number;
  gamma: number;
}

export const simpo = defineObjective<SimpoHparams>({
  name: 'simpo',
  description: 'SimPO: −log σ(β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ)',
  schema: [
    positiveNumber('beta', 2.5, 'β, reward scale'),
    { name: 'gamma', kind: 'number', default: 1.4, min: 0, description: 'γ, target reward margin' },
  ],
  // paper Table 7: β ∈ [2.0, 2.5], γ ∈ [1.0, 1.2, 1.4, 1.6]. β 2.5 with γ 1.4, the grid's γ nearest the SimPO
  // authors' γ/β ≈ 0.55 at β 2.5 (their 1.375 is not in the paper's grid).
  defaults: { beta: 2.5, gamma: 1.4 },
  requirements: () => ({ policy: targetPairRequests(true), reference: [] }),
  compute(policy, _reference, { beta, gamma }, batch) {
    return targetPairLoss(policy, null, { average: true, batch }, (p, dpc, dpr) => {
      const n = p.n;
      let loss = 0;
      let acc = 0;
      let rc = 0;
      let rr = 0;
      for (let i = 0; i < n; i++) {
        // z = β·(avg log π(y_w) − avg log π(y_l)) − γ,  ℓ = −log σ(z),  dℓ/d avg_w = −β·σ(−z)
        const zi = beta * (p.pc[i]! - p.pr[i]!) - gamma;
        loss += -logSigmoid(zi);
        const d = (-beta * sigmoid(-zi)) / n;
        dpc[i] = d;
        dpr[i] = -d;
        rc += beta * p.pc[i]!;
        rr += beta * p.pr[i]!;
        if (p.pc[i]! > p.pr[i]!) acc += 1;
      }
      return {
        loss: loss / n,
        metrics: {
          'rewards/chosen': rc / n,
          'rewards/rejected': rr / n,
          'rewards/accuracies': acc / n,
          'rewards/margins': (rc - rr) / n,
        },
      };
    });
  },
});
