// ORPO (Hong et al. 2024), TRL ORPOTrainer: NLL of y_w plus λ times an odds-ratio term on average log-probs.
import { chosenNll, defineObjective, targetPairLoss, targetPairRequests } from '../define.js';
import { log1mexp, logSigmoid, sigmoid } from '../math.js';
import { getSumLogp } from '../scores.js';

export interface OrpoHparams {
  lambda: number;
}

/**
 * An average log-prob is ≤ 0; at exactly 0 (or a rounding error above it) log(1 − e^x) is −∞. Clamping at
 * −1e-300 keeps every quantity finite: the gradient factor 1/(1 − e^x) ≈ 1e300 meets σ(−log-odds) ≈ 1e-300.
 */
const MAX_AVG_LOGP = -1e-300;

export const orpo = defineObjective<OrpoHparams>({
  name: 'orpo',
  description:
    'ORPO: NLL(y_w) − λ·log σ(log odds(y_w) − log odds(y_l)), odds(y) = p/(1−p), p = exp(avg log π(y))',
  schema: [
    { name: 'lambda', kind: 'number', default: 0.1, min: 0, description: 'λ, odds-ratio weight (TRL beta)' },
  ],
  // paper Table 7: λ ∈ [0.01, 0.1, 1.0]
  defaults: { lambda: 0.1 },
  requirements: () => ({ policy: targetPairRequests(true), reference: [] }),
  compute(policy, _reference, { lambda }, batch) {
    return targetPairLoss(policy, null, { average: true, batch }, (p, dpc, dpr) => {
      const n = p.n;
      let ratioSum = 0;
      let loSum = 0;
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const c = Math.min(p.pc[i]!, MAX_AVG_LOGP);
        const r = Math.min(p.pr[i]!, MAX_AVG_LOGP);
        // log odds ratio  lo = (c − r) − (log(1 − e^c) − log(1 − e^r))
        const lo = c - r - (log1mexp(c) - log1mexp(r));
        ratioSum += logSigmoid(lo);
        loSum += lo;
        if (lo > 0) acc += 1;
        // ℓ_or = −λ·log σ(lo),  dℓ/dlo = −λ·σ(−lo),  dlo/dc = 1/(1 − e^c) = −1/expm1(c),  dlo/dr = 1/expm1(r)
        const dlo = (-lambda * sigmoid(-lo)) / n;
        dpc[i] = p.pc[i]! > MAX_AVG_LOGP ? 0 : dlo * (-1 / Math.expm1(c));
        dpr[i] = p.pr[i]! > MAX_AVG_LOGP ? 0 : dlo * (1 / Math.expm1(r));
      }
      // NLL over the chosen tokens of the batch, on summed log-probs: its gradient is added after the /|y| chain rule.
      const sumC = getSumLogp(policy.targetChosen!, 'policy', 'targetChosen');
      const { nll, dSumLogp } = chosenNll(sumC, p.tc);
      // L = NLL − λ·mean log σ(lo)
      const orLoss = -ratioSum / n;
      return {
        loss: nll + lambda * orLoss,
        chosenSumLogpGrad: dSumLogp,
        metrics: {
          nll,
          'loss/odds_ratio': orLoss,
          log_odds_ratio: ratioSum / n,
          log_odds_chosen: loSum / n,
          'rewards/accuracies': acc / n,
        },
      };
    });
  },
});
