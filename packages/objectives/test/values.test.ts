// Every loss against a value worked out by hand (the arithmetic is in each comment).
import { describe, expect, it } from 'vitest';
import { objectives } from '../src/index.js';
import { scores } from './helpers.js';

// A target pair with one example: policy log π(y_w) = −10, log π(y_l) = −20; reference −12, −18.
// DPO margin h = (−10 − (−20)) − (−12 − (−18)) = 10 − 6 = 4.
const pol = { targetChosen: scores([-10], [5]), targetRejected: scores([-20], [5]) };
const ref = { targetChosen: scores([-12], [5]), targetRejected: scores([-18], [5]) };

describe('hand-worked losses', () => {
  it('sft: NLL averaged per token over the batch', () => {
    // sumLogp [−2, −4], tokens [1, 3]: NLL = (2 + 4) / (1 + 3) = 1.5 (not the mean of per-row averages, 2.6667/2)
    const r = objectives.sft.compute({ targetChosen: scores([-2, -4], [1, 3]) }, {});
    expect(r.loss).toBeCloseTo(1.5, 12);
    // dL/dsumLogp_i = −1/Σ|y| = −0.25
    expect([...r.grads.targetChosen!.sumLogp!]).toEqual([-0.25, -0.25]);
  });

  it('dpo: −log σ(β h)', () => {
    // β = 0.1, h = 4: −log σ(0.4) = log(1 + e^−0.4) = log(1.6703200460) = 0.5130152524
    const r = objectives.dpo.compute(pol, ref, { beta: 0.1 });
    expect(r.loss).toBeCloseTo(0.5130152524, 9);
    // rewards/chosen = β(−10 − (−12)) = 0.2; rewards/rejected = β(−20 − (−18)) = −0.2; margin 0.4
    expect(r.metrics['rewards/chosen']).toBeCloseTo(0.2, 12);
    expect(r.metrics['rewards/margins']).toBeCloseTo(0.4, 12);
    expect(r.metrics['rewards/accuracies']).toBe(1);
    // dL/dlog π(y_w) = −β σ(−0.4) = −0.1 × 0.4013123399 = −0.04013123399
    expect(r.grads.targetChosen!.sumLogp![0]).toBeCloseTo(-0.04013123399, 10);
    expect(r.grads.targetRejected!.sumLogp![0]).toBeCloseTo(0.04013123399, 10);
  });

  it('dpo with label smoothing 0.1 (cDPO)', () => {
    // 0.9 × 0.5130152524 + 0.1 × (−log σ(−0.4) = 0.4 + 0.5130152524 = 0.9130152524) = 0.4617137272 + 0.0913015252
    //   = 0.5530152524
    expect(objectives.dpo.compute(pol, ref, { beta: 0.1, labelSmoothing: 0.1 }).loss).toBeCloseTo(
      0.5530152524,
      9,
    );
  });

  it('ipo: (h − 1/(2τ))² on average log-probs', () => {
    // avg: policy −4/2 = −2, −9/3 = −3; reference −5/2 = −2.5, −6/3 = −2
    // h = (−2 − (−3)) − (−2.5 − (−2)) = 1 + 0.5 = 1.5; τ = 0.1 → 1/(2τ) = 5; (1.5 − 5)² = 12.25
    const r = objectives.ipo.compute(
      { targetChosen: scores([-4], [2]), targetRejected: scores([-9], [3]) },
      { targetChosen: scores([-5], [2]), targetRejected: scores([-6], [3]) },
      { tau: 0.1 },
    );
    expect(r.loss).toBeCloseTo(12.25, 12);
    // dL/dsumLogp_w = 2(1.5 − 5) / |y_w| = −7/2 = −3.5; dL/dsumLogp_l = +7/3
    expect(r.grads.targetChosen!.sumLogp![0]).toBeCloseTo(-3.5, 12);
    expect(r.grads.targetRejected!.sumLogp![0]).toBeCloseTo(7 / 3, 12);
  });

  it('rdpo: [(1−ε)L(w,l) − εL(l,w)]/(1−2ε)', () => {
    // ε = 0.1, βh = 0.4: L(w,l) = 0.5130152524, L(l,w) = −log σ(−0.4) = 0.9130152524
    // (0.9 × 0.5130152524 − 0.1 × 0.9130152524) / 0.8 = (0.4617137272 − 0.0913015252) / 0.8 = 0.4630152524
    expect(objectives.rdpo.compute(pol, ref, { beta: 0.1, epsilon: 0.1 }).loss).toBeCloseTo(0.4630152524, 9);
    // ε = 0 is plain DPO
    expect(objectives.rdpo.compute(pol, ref, { beta: 0.1, epsilon: 0 }).loss).toBeCloseTo(0.5130152524, 9);
  });

  it('r-dpo: −log σ(βh + α(|y_w| − |y_l|))', () => {
    // |y_w| = 10, |y_l| = 30, α = 0.05: z = 0.4 + 0.05 × (−20) = −0.6; −log σ(−0.6) = log(1 + e^0.6)
    //   = log(2.8221188004) = 1.0374879505
    const r = objectives['r-dpo'].compute(
      { targetChosen: scores([-10], [10]), targetRejected: scores([-20], [30]) },
      { targetChosen: scores([-12], [10]), targetRejected: scores([-18], [30]) },
      { beta: 0.1, alpha: 0.05 },
    );
    expect(r.loss).toBeCloseTo(1.0374879505, 9);
  });

  it('simpo: −log σ(β(avg_w − avg_l) − γ)', () => {
    // avg_w = −3/3 = −1, avg_l = −8/4 = −2; β = 2.5, γ = 1.375: z = 2.5 × 1 − 1.375 = 1.125
    // −log σ(1.125) = log(1 + e^−1.125) = log(1.3246524674) = 0.2811501362
    const r = objectives.simpo.compute(
      { targetChosen: scores([-3], [3]), targetRejected: scores([-8], [4]) },
      {},
      { beta: 2.5, gamma: 1.375 },
    );
    expect(r.loss).toBeCloseTo(0.2811501362, 9);
  });

  it('cpo: −log σ(β(log π_w − log π_l)) + λ·NLL', () => {
    // β(−10 − (−20)) = 1: −log σ(1) = log(1 + e^−1) = 0.3132616875; NLL = 10/5 = 2; λ = 1 → 2.3132616875
    const r = objectives.cpo.compute(pol, {}, { beta: 0.1, lambda: 1 });
    expect(r.loss).toBeCloseTo(2.3132616875, 9);
    expect(r.metrics.nll).toBeCloseTo(2, 12);
  });

  it('orpo: NLL − λ log σ(log odds ratio)', () => {
    // avg_w = log 0.5 (p = 0.5, odds 1, log odds 0); avg_l = log 0.2 (odds 0.25, log odds −log 4)
    // log odds ratio = 0 − (−log 4) = log 4; log σ(log 4) = log(4/5) = −0.2231435513
    // NLL = −2 log 0.5 / 2 = 0.6931471806; L = 0.6931471806 + 0.1 × 0.2231435513 = 0.7154615357
    const r = objectives.orpo.compute(
      { targetChosen: scores([2 * Math.log(0.5)], [2]), targetRejected: scores([3 * Math.log(0.2)], [3]) },
      {},
      { lambda: 0.1 },
    );
    expect(r.loss).toBeCloseTo(0.7154615357, 9);
    expect(r.metrics.log_odds_chosen).toBeCloseTo(Math.log(4), 12);
  });

  it('kto: z_ref from mismatched pairs, mean over 2n examples', () => {
    // KL pair: policy −10, reference −11 → z_ref = max(0, 1) = 1
    // ρ_w = −10 − (−13) = 3, ρ_l = −20 − (−19) = −1; β = 0.1
    // x = 0.1(3 − 1) = 0.2, y = 0.1(1 − (−1)) = 0.2; L = [(1 − σ(0.2)) + (1 − σ(0.2))]/2 = σ(−0.2) = 0.4501660027
    const policy = {
      targetChosen: scores([-10], [5]),
      targetRejected: scores([-20], [5]),
      klMismatched: scores([-10], [5]),
    };
    const reference = {
      targetChosen: scores([-13], [5]),
      targetRejected: scores([-19], [5]),
      klMismatched: scores([-11], [5]),
    };
    const r = objectives.kto.compute(policy, reference, { beta: 0.1 });
    expect(r.loss).toBeCloseTo(0.4501660027, 9);
    expect(r.metrics.kl).toBe(1);
    // Clamp: KL estimate −2 → z_ref = 0: x = 0.3, y = 0.1; L = (σ(−0.3) + σ(−0.1))/2 = (0.4255574832 + 0.4750208125)/2
    //   = 0.4502891479
    const r2 = objectives.kto.compute(
      { ...policy, klMismatched: scores([-13], [5]) },
      { ...reference, klMismatched: scores([-11], [5]) },
      { beta: 0.1 },
    );
    expect(r2.loss).toBeCloseTo(0.4502891479, 9);
    expect(r2.metrics.kl).toBe(0);
    // desirable weight 2, undesirable 1: [2σ(−0.2) + σ(−0.2)]/2 = 1.5 × 0.4501660027 = 0.6752490040
    expect(objectives.kto.compute(policy, reference, { beta: 0.1, desirableWeight: 2 }).loss).toBeCloseTo(
      0.675249004,
      9,
    );
  });
});

describe('hand-worked MPO', () => {
  // One example, hidden size 2.
  // target (policy): avg_w = −2/2 = −1, avg_l = −3/2 = −1.5 → RG_t = 0.5 (sums: −2 − (−3) = 1)
  // dominant (reference): avg_w = −1/2 = −0.5, avg_l = −8/4 = −2 → RG_d = 1.5 (sums: −1 − (−8) = 7)
  // hidden (default pooling: the official code's mean over the padded sequence, trainer.py l.178): policy chosen [1, 2] vs reference [1, 1]; policy rejected [0, 0] vs reference [2, 0]
  //   squared differences 0 + 1 + 4 + 0 = 5 over 2 sequences × 2 units → L2 = 5/4 = 1.25
  const f = (a: number[]) => Float64Array.from(a);
  const policy = {
    targetChosen: scores([-2], [2]),
    targetRejected: scores([-3], [2]),
    dominantChosen: scores([-0.7], [2], {
      hiddenSize: 2,
      meanUnmaskedHidden: f([1, 2]),
      meanHidden: f([0, 0]),
      lastHidden: f([0, 0]),
      kl: f([0.3]),
    }),
    dominantRejected: scores([-9], [4], {
      hiddenSize: 2,
      meanUnmaskedHidden: f([0, 0]),
      meanHidden: f([1, 0]),
      lastHidden: f([3, 0]),
      kl: f([0.5]),
    }),
  };
  const reference = {
    dominantChosen: scores([-1], [2], {
      hiddenSize: 2,
      meanUnmaskedHidden: f([1, 1]),
      meanHidden: f([0, 0]),
      lastHidden: f([0, 1]),
    }),
    dominantRejected: scores([-8], [4], {
      hiddenSize: 2,
      meanUnmaskedHidden: f([2, 0]),
      meanHidden: f([0, 0]),
      lastHidden: f([0, 0]),
    }),
    anchorChosen: scores([-6], [3]),
    anchorRejected: scores([-4], [1]),
  };
  const mpo = objectives.mpo;

  it('default: L1 + L2', () => {
    // β = 1: (0.5 − 1.5)² = 1; L = 1 + 1 × 1.25 = 2.25
    const r = mpo.compute(policy, reference, {});
    expect(r.metrics['loss/rg']).toBeCloseTo(1, 12);
    expect(r.metrics['loss/retain']).toBeCloseTo(1.25, 12);
    expect(r.loss).toBeCloseTo(2.25, 12);
    // dL1/dsumLogp_w = 2β(β RG_t − RG_d)/|y_w| = 2 × (−1)/2 = −1
    expect(r.grads.targetChosen!.sumLogp![0]).toBeCloseTo(-1, 12);
    // dL2/dh = 2(h − h_ref)/(2nH) = (h − h_ref)/2: chosen [0, 0.5], rejected [−1, 0]
    expect([...r.grads.dominantChosen!.meanUnmaskedHidden!]).toEqual([0, 0.5]);
    expect([...r.grads.dominantRejected!.meanUnmaskedHidden!]).toEqual([-1, 0]);
  });

  it('β = 2, w = 0.5', () => {
    // (2 × 0.5 − 1.5)² = 0.25; L = 0.25 + 0.5 × 1.25 = 0.875
    expect(mpo.compute(policy, reference, { beta: 2, w: 0.5 }).loss).toBeCloseTo(0.875, 12);
  });

  it('retain off', () => {
    expect(mpo.compute(policy, reference, { retain: false }).loss).toBeCloseTo(1, 12);
  });

  it('last-token pooling', () => {
    // chosen [0, 0] vs [0, 1] → 1; rejected [3, 0] vs [0, 0] → 9; L2 = 10/4 = 2.5; L = 1 + 2.5 = 3.5
    expect(mpo.compute(policy, reference, { pooling: 'last' }).loss).toBeCloseTo(3.5, 12);
  });

  it('masked-mean pooling', () => {
    // chosen [0, 0] vs [0, 0] → 0; rejected [1, 0] vs [0, 0] → 1; L2 = 1/4; L = 1 + 0.25 = 1.25
    expect(mpo.compute(policy, reference, { pooling: 'mean' }).loss).toBeCloseTo(1.25, 12);
  });

  it('no length normalisation: sums', () => {
    // RG_t = −2 − (−3) = 1, RG_d = −1 − (−8) = 7: (1 − 7)² = 36; L = 36 + 1.25 = 37.25
    expect(mpo.compute(policy, reference, { lengthNormalize: false }).loss).toBeCloseTo(37.25, 12);
  });

  it('KL constraint', () => {
    // L2 = (0.3 + 0.5)/(2 × 1) = 0.4; L = 1 + 0.4 = 1.4
    const r = mpo.compute(policy, reference, { constraint: 'kl' });
    expect(r.loss).toBeCloseTo(1.4, 12);
    expect([...r.grads.dominantChosen!.kl!]).toEqual([0.5]);
  });

  it('RG_d sources', () => {
    // constant 0.2: (0.5 − 0.2)² = 0.09; L = 0.09 + 1.25 = 1.34
    expect(mpo.compute(policy, reference, { rgdSource: { constant: 0.2 } }).loss).toBeCloseTo(1.34, 12);
    // policy: avg −0.7/2 = −0.35, −9/4 = −2.25 → RG_d = 1.9: (0.5 − 1.9)² = 1.96; L = 3.21
    expect(mpo.compute(policy, reference, { rgdSource: 'policy' }).loss).toBeCloseTo(3.21, 12);
    // language: anchor reference avg −6/3 = −2, −4/1 = −4 → RG_d = 2: (0.5 − 2)² = 2.25; L = 3.5
    expect(mpo.compute(policy, reference, { rgdSource: { language: 'zh' } }).loss).toBeCloseTo(3.5, 12);
  });
});
