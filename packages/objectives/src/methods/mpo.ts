// MPO (Zhao et al., ACL 2025): match the target-language reward gap to the dominant language's, and keep the
// dominant language's representations where the frozen initial model had them.
//
//   RG(y_w, y_l)  = avg log π(y_w|x) − avg log π(y_l|x)        (Eq. 4; sums instead of averages without length norm)
//   L1 = (1/n) Σ_i (β·RG_t,i − RG_d,i)²                           (RG_t: policy, target-language pair)
//   L2 = (1/(2nH)) Σ_{s ∈ dominant chosen ∪ rejected} ‖h_θ(s) − h_ref(s)‖²   (pooled final-norm hidden states)
//   L  = L1 + w·L2
//
// Official code (circle-hit/MPO, src/llamafactory/train/dpo/trainer.py): mpo_loss (l.137-146) is
// nn.MSELoss()(β·target_gap, source_gap) with source_gap from the reference model under no_grad (l.205); the retain
// term (l.234-235) is nn.MSELoss() between hidden_states[-1].mean(dim=1) (l.178) of the policy and the reference over
// the concatenated source chosen+rejected batch, added with weight 1. That mean runs over every position of the
// padded batch (right padding, pad_to_multiple_of=8, workflow.py l.76; one example per device in the released
// configs), which is what the default pooling 'mean-unmasked' reproduces; the trainer pads policy and reference
// identically (each example's dominant pair together) so that L2 is 0 before the first step.
//
// RG_d from the policy (the paper's MPO-Policy, Appendix H.3, Table 15) keeps its gradient: with
//   e_i = β·RG_t,i − RG_d,i,   dL1/dRG_t,i = 2β·e_i/n,   dL1/dRG_d,i = −2·e_i/n
// (the paper's Eq. 28 writes the factor 2β on both terms; the exact derivative of (β·RG_t − RG_d)² has 2β on RG_t
// and 2 on RG_d, which is what this computes and what the finite-difference tests check). 'policy-detached' stops
// that gradient (RG_d a per-step target), a variant the paper does not run.
import { defineObjective, gapMetrics, readTargetPair, rewardGapMetrics, targetPairGrads } from '../define.js';
import { positiveNumber } from '../hparams.js';
import { mean } from '../math.js';
import { getGroup, getHidden, getKl, getLogps, poolingField, toSumLogpGrad } from '../scores.js';
import type { GradsByGroup, GroupName, GroupRequest, Pooling, RgdSource, ScoresByGroup } from '../types.js';

export interface MpoHparams {
  /** β scales the target gap: (β·RG_t − RG_d)². Official configs: 1.0 (LLaMA-3.1), 1.5 (Gemma-2, Qwen2.5). */
  beta: number;
  /** w, weight of the retain term L2. */
  w: number;
  /** Pooling of the final-norm hidden state in L2 (default: the official code's mean over the padded pair). */
  pooling: Pooling;
  /** Include L2 (paper Table 4 "w/o L2" when false). */
  retain: boolean;
  /** RG from per-token average log-probs (true, Eq. 4) or from summed log-probs (false). */
  lengthNormalize: boolean;
  /** L2 on pooled hidden states, or on the engine's per-sequence KL between policy and reference logits. */
  constraint: 'hidden' | 'kl';
  /** Where RG_d comes from (see rgdSource in the schema). */
  rgdSource: RgdSource;
}

// β: paper Table 8 (LLaMA-3.1 1.0; Gemma-2 and Qwen2.5 1.5, see presets.ts), searched in [1.0, 1.5, 2.0] (App. G).
// w: the official code adds the retain MSE with weight 1 (trainer.py l.235).
const defaults: MpoHparams = {
  beta: 1.0,
  w: 1.0,
  pooling: 'mean-unmasked',
  retain: true,
  lengthNormalize: true,
  constraint: 'hidden',
  rgdSource: 'reference',
};

type Req = Omit<GroupRequest, 'group' | 'sequence'>;

/** Merges per-group needs into one request per group (a group is scored once whatever it is used for). */
function collect(needs: Array<[GroupName, GroupRequest['sequence'], Partial<Req>]>): GroupRequest[] {
  const out = new Map<GroupName, GroupRequest>();
  for (const [group, sequence, need] of needs) {
    const r = out.get(group) ?? { group, sequence, sumLogp: false, grad: false };
    if (need.sumLogp) r.sumLogp = true;
    if (need.hidden) r.hidden = need.hidden;
    if (need.kl) r.kl = true;
    if (need.grad) r.grad = true;
    out.set(group, r);
  }
  return [...out.values()];
}

const DC = { pair: 'dominant', response: 'chosen' } as const;
const DR = { pair: 'dominant', response: 'rejected' } as const;

function requirements(h: MpoHparams) {
  const policy: Array<[GroupName, GroupRequest['sequence'], Partial<Req>]> = [
    ['targetChosen', { pair: 'target', response: 'chosen' }, { sumLogp: true, grad: true }],
    ['targetRejected', { pair: 'target', response: 'rejected' }, { sumLogp: true, grad: true }],
  ];
  const reference: Array<[GroupName, GroupRequest['sequence'], Partial<Req>]> = [];
  const src = h.rgdSource;
  if (src === 'reference') {
    reference.push(['dominantChosen', DC, { sumLogp: true }], ['dominantRejected', DR, { sumLogp: true }]);
  } else if (src === 'policy' || src === 'policy-detached') {
    // MPO-Policy differentiates through RG_d; the detached variant scores it without gradient.
    const grad = src === 'policy';
    policy.push(
      ['dominantChosen', DC, { sumLogp: true, grad }],
      ['dominantRejected', DR, { sumLogp: true, grad }],
    );
  } else if ('language' in src) {
    const pair = { language: src.language };
    reference.push(
      ['anchorChosen', { pair, response: 'chosen' }, { sumLogp: true }],
      ['anchorRejected', { pair, response: 'rejected' }, { sumLogp: true }],
    );
  }
  if (h.retain) {
    if (h.constraint === 'hidden') {
      // Hidden states only: the policy's dominant sequences need no LM head (unless RG_d = policy).
      policy.push(['dominantChosen', DC, { hidden: h.pooling, grad: true }]);
      policy.push(['dominantRejected', DR, { hidden: h.pooling, grad: true }]);
      reference.push(
        ['dominantChosen', DC, { hidden: h.pooling }],
        ['dominantRejected', DR, { hidden: h.pooling }],
      );
    } else {
      // kl on the policy side needs the reference's token distributions of the same sequences.
      policy.push(
        ['dominantChosen', DC, { kl: true, grad: true }],
        ['dominantRejected', DR, { kl: true, grad: true }],
      );
      reference.push(['dominantChosen', DC, { kl: true }], ['dominantRejected', DR, { kl: true }]);
    }
  }
  return { policy: collect(policy), reference: collect(reference) };
}

/** RG_i = logp(y_w) − logp(y_l) for a chosen/rejected pair of groups. */
function gap(
  scores: ScoresByGroup,
  side: 'policy' | 'reference',
  c: GroupName,
  r: GroupName,
  n: number,
  avg: boolean,
) {
  const lc = getLogps(getGroup(scores, side, c, n), side, c, avg);
  const lr = getLogps(getGroup(scores, side, r, n), side, r, avg);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lc[i]! - lr[i]!;
  return out;
}

export const mpo = defineObjective<MpoHparams>({
  name: 'mpo',
  description: 'MPO: (β·RG_target − RG_dominant,ref)² + w·MSE(h_θ, h_ref) on dominant-language sequences',
  schema: [
    positiveNumber('beta', 1.0, 'β in (β·RG_t − RG_d)²'),
    { name: 'w', kind: 'number', default: 1.0, min: 0, description: 'w, weight of the retain term L2' },
    {
      name: 'pooling',
      kind: 'enum',
      // official code trainer.py l.178: hidden_states[-1].mean(dim=1) over the padded batch
      default: 'mean-unmasked',
      values: ['mean-unmasked', 'mean', 'last'],
      description:
        'hidden-state pooling for L2: mean over all positions of the padded pair incl. padding (official code, default; each example\'s dominant chosen and rejected padded together to a multiple of 8) | mean over non-padding positions | last position (paper §3 text: "at the position of the last token")',
    },
    { name: 'retain', kind: 'boolean', default: true, description: 'include the retain term L2' },
    {
      name: 'lengthNormalize',
      kind: 'boolean',
      default: true,
      description: 'reward gap on per-token average log-probs (true, Eq. 4) or on summed log-probs (false)',
    },
    {
      name: 'constraint',
      kind: 'enum',
      default: 'hidden',
      values: ['hidden', 'kl'],
      description:
        'L2 on pooled hidden states (MSE) or on per-sequence KL between policy and reference logits',
    },
    {
      name: 'rgdSource',
      kind: 'rgdSource',
      default: 'reference',
      description:
        'RG_d from the frozen reference on the dominant pair (paper) | "policy": the policy\'s own dominant gap, differentiated (paper\'s MPO-Policy, Table 15) | "policy-detached": the same without its gradient | {"constant": x} (Table 13) | {"language": code}: the reference gap of the same prompt\'s pair in that language (Table 5)',
    },
  ],
  defaults,
  requirements,
  compute(policy, reference, h, batch) {
    // Long: the MPO loss and its derivative term by term, each beside its formula in a comment; splitting would separate them.
    const avg = h.lengthNormalize;
    const p = readTargetPair(policy, null, avg);
    const n = p.n;
    const rgT = new Float64Array(n);
    for (let i = 0; i < n; i++) rgT[i] = p.pc[i]! - p.pr[i]!;

    let rgD: Float64Array;
    const src = h.rgdSource;
    const fromPolicy = src === 'policy' || src === 'policy-detached';
    if (src === 'reference') rgD = gap(reference, 'reference', 'dominantChosen', 'dominantRejected', n, avg);
    else if (fromPolicy) rgD = gap(policy, 'policy', 'dominantChosen', 'dominantRejected', n, avg);
    else if ('constant' in src) rgD = new Float64Array(n).fill(src.constant);
    else rgD = gap(reference, 'reference', 'anchorChosen', 'anchorRejected', n, avg);

    // L1 = (1/n) Σ (β·RG_t − RG_d)²,  dL1/dRG_t = 2β(β·RG_t − RG_d)/n,  dRG_t/dlogp(y_w) = 1 = −dRG_t/dlogp(y_l)
    //                                 dL1/dRG_d = −2(β·RG_t − RG_d)/n  (used only when RG_d is the policy's, with grad)
    let l1 = 0;
    let absErr = 0;
    const dpc = new Float64Array(n);
    const dpr = new Float64Array(n);
    const ddc = new Float64Array(n);
    const ddr = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const e = h.beta * rgT[i]! - rgD[i]!;
      l1 += e * e;
      absErr += Math.abs(e);
      dpc[i] = (2 * h.beta * e) / n;
      dpr[i] = -dpc[i]!;
      ddc[i] = (-2 * e) / n;
      ddr[i] = -ddc[i]!;
    }
    l1 /= n;
    const grads: GradsByGroup = targetPairGrads(policy, dpc, dpr, avg);
    if (src === 'policy') {
      for (const [g, d] of [
        ['dominantChosen', ddc],
        ['dominantRejected', ddr],
      ] as const) {
        grads[g] = { sumLogp: toSumLogpGrad(d, getGroup(policy, 'policy', g, n), 'policy', g, avg) };
      }
    }

    let l2 = 0;
    if (h.retain) {
      if (h.constraint === 'hidden') {
        // L2 = (1/(2nH)) Σ_s Σ_k (h_θ − h_ref)²,  dL/dh_θ = w·2(h_θ − h_ref)/(2nH) = w·(h_θ − h_ref)/(nH)
        const field = poolingField[h.pooling];
        let hs = 0;
        let sq = 0;
        const parts: Array<[GroupName, Float32Array]> = [];
        for (const g of ['dominantChosen', 'dominantRejected'] as const) {
          const pg = getGroup(policy, 'policy', g, n);
          const rg = getGroup(reference, 'reference', g, n);
          if (rg.hiddenSize !== pg.hiddenSize) {
            throw new Error(`reference.${g}.hiddenSize ${rg.hiddenSize} ≠ policy's ${pg.hiddenSize}`);
          }
          hs = pg.hiddenSize;
          const hp = getHidden(pg, 'policy', g, h.pooling);
          const hr = getHidden(rg, 'reference', g, h.pooling);
          const d = new Float32Array(hp.length);
          for (let k = 0; k < hp.length; k++) {
            const diff = hp[k]! - hr[k]!;
            sq += diff * diff;
            d[k] = diff;
          }
          parts.push([g, d]);
        }
        const denom = 2 * n * hs;
        l2 = sq / denom;
        const scale = (h.w * 2) / denom;
        for (const [g, d] of parts) {
          for (let k = 0; k < d.length; k++) d[k] = d[k]! * scale;
          grads[g] = { ...grads[g], [field]: d };
        }
      } else {
        // L2 = (1/(2n)) Σ_s KL_s,  dL/dKL_s = w/(2n)
        let s = 0;
        for (const g of ['dominantChosen', 'dominantRejected'] as const) {
          const k = getKl(getGroup(policy, 'policy', g, n), 'policy', g);
          for (let i = 0; i < n; i++) s += k[i]!;
          grads[g] = { ...grads[g], kl: new Float64Array(n).fill(h.w / (2 * n)) };
        }
        l2 = s / (2 * n);
      }
    }
    const loss = l1 + (h.retain ? h.w * l2 : 0);
    return {
      loss,
      grads,
      metrics: {
        loss,
        'loss/rg': l1,
        'loss/retain': l2,
        'mpo/gap_target': mean(rgT),
        'mpo/gap_abs_error': absErr / n,
        ...gapMetrics('mpo/gap_dominant', rgD, batch),
        ...rewardGapMetrics(p, avg, batch),
      },
    };
  },
});
