// IPO (Azar et al. 2023), TRL loss_type="ipo": squared loss on per-token average log-probs.
import {
  defineObjective,
  implicitRewardMetrics,
  logpMetrics,
  readTargetPair,
  rewardGapMetrics,
  targetPairGrads,
  targetPairRequests,
} from '../define.js';
import { referenceTargetPair } from './dpo.js';

export interface IpoHparams {
  tau: number;
}

export const ipo = defineObjective<IpoHparams>({
  name: 'ipo',
  description: 'IPO: (h − 1/(2τ))², h = log-ratio margin on average log-probs',
  schema: [
    {
      name: 'tau',
      kind: 'number',
      default: 0.1,
      min: 0,
      minExclusive: true,
      description: 'τ, regularisation (TRL passes it as beta); the target margin is 1/(2τ)',
    },
  ],
  defaults: { tau: 0.1 },
  requirements: () => ({
    policy: targetPairRequests(true),
    reference: referenceTargetPair,
  }),
  compute(policy, reference, { tau }, batch) {
    // TRL averages log-probs over response tokens for IPO (and only for IPO among the DPO losses).
    const p = readTargetPair(policy, reference, true);
    const n = p.n;
    const target = 1 / (2 * tau);
    const dpc = new Float64Array(n);
    const dpr = new Float64Array(n);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      // h = (avg log π(y_w) − avg log π(y_l)) − (avg log π_ref(y_w) − avg log π_ref(y_l))
      const h = p.pc[i]! - p.pr[i]! - (p.rc[i]! - p.rr[i]!);
      // ℓ = (h − 1/(2τ))²,  dℓ/dh = 2(h − 1/(2τ))
      const d = h - target;
      loss += d * d;
      dpc[i] = (2 * d) / n;
      dpr[i] = (-2 * d) / n;
    }
    loss /= n;
    return {
      loss,
      grads: targetPairGrads(policy, dpc, dpr, true),
      // TRL reports rewards with β = τ for IPO.
      metrics: {
        loss,
        ...implicitRewardMetrics(p, tau),
        ...logpMetrics(p),
        ...rewardGapMetrics(p, true, batch),
      },
    };
  },
});
