// CPO (Xu et al. 2024), TRL CPOTrainer loss_type="sigmoid": reference-free preference term plus a BC (NLL) term.
import { chosenNll, defineObjective, targetPairLoss, targetPairRequests } from '../define.js';
import { positiveNumber } from '../hparams.js';
import { logSigmoid, sigmoid } from '../math.js';

export interface CpoHparams {
  beta: number;
  lambda: number;
}

export const cpo = defineObjective<CpoHparams>({
  name: 'cpo',
  description: 'CPO: −log σ(β(log π(y_w) − log π(y_l))) + λ·NLL(y_w)',
  schema: [
    positiveNumber('beta', 0.1, 'β, preference scale'),
    { name: 'lambda', kind: 'number', default: 1.0, min: 0, description: 'λ, NLL weight (TRL cpo_alpha)' },
  ],
  // paper Table 7: λ = 1.0, β ∈ [0.01, 0.05, 0.1]
  defaults: { beta: 0.1, lambda: 1.0 },
  requirements: () => ({ policy: targetPairRequests(true), reference: [] }),
  compute(policy, _reference, { beta, lambda }, batch) {
    // TRL's CPO uses summed log-probs for the sigmoid loss.
    return targetPairLoss(policy, null, { average: false, batch }, (p, dpc, dpr) => {
      const n = p.n;
      let pref = 0;
      let acc = 0;
      for (let i = 0; i < n; i++) {
        // z = β(log π(y_w) − log π(y_l)),  ℓ_pref = −log σ(z),  dℓ/d log π(y_w) = −β·σ(−z)
        const zi = beta * (p.pc[i]! - p.pr[i]!);
        pref += -logSigmoid(zi);
        const d = (-beta * sigmoid(-zi)) / n;
        dpc[i] = d;
        dpr[i] = -d;
        if (zi > 0) acc += 1;
      }
      pref /= n;
      // L = mean ℓ_pref + λ·NLL,  NLL = −Σ log π(y_w) / Σ |y_w|
      const { nll, dSumLogp } = chosenNll(p.pc, p.tc);
      for (let i = 0; i < n; i++) dpc[i] = dpc[i]! + lambda * dSumLogp;
      const loss = pref + lambda * nll;
      return { loss, metrics: { 'loss/preference': pref, nll, 'rewards/accuracies': acc / n } };
    });
  },
});
