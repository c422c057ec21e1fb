// Glue shared by every objective: hyperparameter resolution and the common pair-reading code.
import { resolveAgainstSchema } from './hparams.js';
import { getGroup, getLogps, getTokens, toSumLogpGrad } from './scores.js';
import type {
  BatchInfo,
  GradsByGroup,
  GroupRequest,
  Objective,
  ObjectiveResult,
  ParamSpec,
  Requirements,
  ScoresByGroup,
} from './types.js';

interface ObjectiveSpec<H extends object> {
  name: string;
  description: string;
  schema: readonly ParamSpec[];
  defaults: H;
  requirements(h: H): Requirements;
  compute(policy: ScoresByGroup, reference: ScoresByGroup, h: H, batch?: BatchInfo): ObjectiveResult;
}

/** Wraps a spec so that public calls accept partial hyperparameters and reject invalid ones. */
export function defineObjective<H extends object>(spec: ObjectiveSpec<H>): Objective<H> {
  const defaults = Object.freeze({ ...spec.defaults });
  const resolve = (p: unknown): H => resolveAgainstSchema(spec.name, spec.schema, defaults, p);
  return {
    name: spec.name,
    description: spec.description,
    schema: spec.schema,
    defaults,
    requirements: (h) => spec.requirements(resolve(h)),
    compute: (policy, reference, h, batch) => {
      const out = spec.compute(policy, reference, resolve(h), batch);
      const counts = languageMetricCounts(out.metrics, batch);
      return counts ? { ...out, metricCounts: counts } : out;
    },
  };
}

/** The metrics `gapMetrics` splits by language (`${name}/${lang}`). */
export const PER_LANGUAGE_METRICS = ['rg/target', 'mpo/gap_dominant'] as const;

/** Examples behind each per-language metric of `metrics`: the count of that language in the batch. */
function languageMetricCounts(
  metrics: Record<string, number>,
  batch: BatchInfo | undefined,
): Record<string, number> | undefined {
  if (!batch?.lang) return undefined;
  const perLang = new Map<string, number>();
  for (const l of batch.lang) perLang.set(l, (perLang.get(l) ?? 0) + 1);
  const out: Record<string, number> = {};
  for (const name of PER_LANGUAGE_METRICS) {
    for (const [lang, count] of perLang) if (`${name}/${lang}` in metrics) out[`${name}/${lang}`] = count;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Policy request for the target pair's chosen and rejected sequences through the LM head. */
export function targetPairRequests(grad: boolean): GroupRequest[] {
  return [
    { group: 'targetChosen', sequence: { pair: 'target', response: 'chosen' }, sumLogp: true, grad },
    { group: 'targetRejected', sequence: { pair: 'target', response: 'rejected' }, sumLogp: true, grad },
  ];
}

/** log π of the target pair (policy, and reference when asked), summed or averaged per token. */
export interface PairLogps {
  n: number;
  /** policy log π(y_w|x), log π(y_l|x) */
  pc: Float64Array;
  pr: Float64Array;
  /** reference log π_ref(y_w|x), log π_ref(y_l|x); empty arrays when not read */
  rc: Float64Array;
  rr: Float64Array;
  /** response lengths |y_w|, |y_l| from the policy groups */
  tc: Int32Array;
  tr: Int32Array;
}

export function readTargetPair(
  policy: ScoresByGroup,
  reference: ScoresByGroup | null,
  average: boolean,
): PairLogps {
  const gc = getGroup(policy, 'policy', 'targetChosen');
  const n = gc.n;
  const gr = getGroup(policy, 'policy', 'targetRejected', n);
  const out: PairLogps = {
    n,
    pc: getLogps(gc, 'policy', 'targetChosen', average),
    pr: getLogps(gr, 'policy', 'targetRejected', average),
    rc: new Float64Array(0),
    rr: new Float64Array(0),
    tc: getTokens(gc, 'policy', 'targetChosen'),
    tr: getTokens(gr, 'policy', 'targetRejected'),
  };
  if (reference) {
    out.rc = getLogps(
      getGroup(reference, 'reference', 'targetChosen', n),
      'reference',
      'targetChosen',
      average,
    );
    out.rr = getLogps(
      getGroup(reference, 'reference', 'targetRejected', n),
      'reference',
      'targetRejected',
      average,
    );
  }
  return out;
}

/** Gradients w.r.t. the target pair's sumLogp from gradients w.r.t. the (possibly averaged) log-probs. */
export function targetPairGrads(
  policy: ScoresByGroup,
  dpc: Float64Array,
  dpr: Float64Array,
  average: boolean,
): GradsByGroup {
  return {
    targetChosen: { sumLogp: toSumLogpGrad(dpc, policy.targetChosen!, 'policy', 'targetChosen', average) },
    targetRejected: {
      sumLogp: toSumLogpGrad(dpr, policy.targetRejected!, 'policy', 'targetRejected', average),
    },
  };
}

/**
 * Reward-gap metrics every pairwise method reports, whatever its loss uses:
 * RG = avgLogp(y_w) − avgLogp(y_l) on the policy's target pair (the paper's Eq. 4), overall and per language.
 */
export function rewardGapMetrics(p: PairLogps, average: boolean, batch?: BatchInfo): Record<string, number> {
  const rg = new Float64Array(p.n);
  for (let i = 0; i < p.n; i++) {
    const c = average ? p.pc[i]! : p.pc[i]! / p.tc[i]!;
    const r = average ? p.pr[i]! : p.pr[i]! / p.tr[i]!;
    rg[i] = c - r;
  }
  return gapMetrics('rg/target', rg, batch);
}

/**
 * mean of `values` under `name`, and per language as `${name}/${lang}` when languages are known (`name` must be
 * one of PER_LANGUAGE_METRICS, so that the result carries each language's count).
 */
export function gapMetrics(
  name: (typeof PER_LANGUAGE_METRICS)[number],
  values: Float64Array,
  batch?: BatchInfo,
): Record<string, number> {
  const m: Record<string, number> = {};
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  m[name] = s / values.length;
  const langs = batch?.lang;
  if (langs && langs.length === values.length) {
    const sums = new Map<string, [number, number]>();
    for (let i = 0; i < values.length; i++) {
      const acc = sums.get(langs[i]!) ?? [0, 0];
      acc[0] += values[i]!;
      acc[1] += 1;
      sums.set(langs[i]!, acc);
    }
    for (const [lang, [sum, count]] of sums) m[`${name}/${lang}`] = sum / count;
  }
  return m;
}

/** TRL's implicit-reward metrics for reference-based methods: r = β·(log π − log π_ref). */
export function implicitRewardMetrics(p: PairLogps, beta: number): Record<string, number> {
  let ch = 0;
  let rj = 0;
  let acc = 0;
  for (let i = 0; i < p.n; i++) {
    const c = beta * (p.pc[i]! - p.rc[i]!);
    const r = beta * (p.pr[i]! - p.rr[i]!);
    ch += c;
    rj += r;
    if (c > r) acc += 1;
  }
  return {
    'rewards/chosen': ch / p.n,
    'rewards/rejected': rj / p.n,
    'rewards/accuracies': acc / p.n,
    'rewards/margins': (ch - rj) / p.n,
  };
}

/** Mean policy log-probs of the pair as reported by TRL (logps/chosen, logps/rejected). */
export function logpMetrics(p: PairLogps): Record<string, number> {
  let c = 0;
  let r = 0;
  for (let i = 0; i < p.n; i++) {
    c += p.pc[i]!;
    r += p.pr[i]!;
  }
  return { 'logps/chosen': c / p.n, 'logps/rejected': r / p.n };
}

/**
 * Token-level NLL of the chosen responses, averaged over every response token of the batch (what a mean-reduced
 * cross-entropy over the chosen half computes in TRL's SFT/CPO/ORPO):
 *   NLL = −Σ_i log π(y_w,i|x_i) / Σ_i |y_w,i|,   d NLL / d sumLogp_i = −1 / Σ_i |y_w,i|
 */
export function chosenNll(sumLogp: Float64Array, tokens: Int32Array): { nll: number; dSumLogp: number } {
  let s = 0;
  let t = 0;
  for (let i = 0; i < sumLogp.length; i++) {
    s += sumLogp[i]!;
    t += tokens[i]!;
  }
  return { nll: -s / t, dSumLogp: -1 / t };
}

/** What a pairwise method computes on the target pair; `targetPairLoss` does the rest. */
export interface PairLossParts {
  loss: number;
  /** The method's own metrics, reported after `loss` and before the log-prob and reward-gap metrics. */
  metrics: Record<string, number>;
  /** Added to every chosen sumLogp gradient after the 1/|y| chain rule (ORPO's token-mean NLL). */
  chosenSumLogpGrad?: number;
}

/**
 * Every pairwise method reads the target pair (the reference's too when it has one), fills dL/d log π(y_w) and
 * dL/d log π(y_l) per example on the log-probs as read (`dpc`, `dpr`, averaged when `average`), and reports TRL's
 * log-prob metrics and the reward gap. `compute` is the method's own loss; this does the reading, the chain rule to
 * the pair's sumLogp and the common metrics.
 */
export function targetPairLoss(
  policy: ScoresByGroup,
  reference: ScoresByGroup | null,
  opts: { average: boolean; batch?: BatchInfo | undefined },
  compute: (p: PairLogps, dpc: Float64Array, dpr: Float64Array) => PairLossParts,
): ObjectiveResult {
  const p = readTargetPair(policy, reference, opts.average);
  const dpc = new Float64Array(p.n);
  const dpr = new Float64Array(p.n);
  const { loss, metrics, chosenSumLogpGrad } = compute(p, dpc, dpr);
  const grads = targetPairGrads(policy, dpc, dpr, opts.average);
  if (chosenSumLogpGrad !== undefined) {
    const gc = grads.targetChosen!.sumLogp!;
    for (let i = 0; i < p.n; i++) gc[i] = gc[i]! + chosenSumLogpGrad;
  }
  return {
    loss,
    grads,
    metrics: { loss, ...metrics, ...logpMetrics(p), ...rewardGapMetrics(p, opts.average, opts.batch) },
  };
}

/**
 * The reference-margin losses (DPO, IPO, rDPO, R-DPO) are each a per-example function of
 *   h = (log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l))
 * (averaged log-probs when `average`). `perExample` gives ℓ_i and dℓ_i/dh; this takes the batch mean, turns
 * dℓ/dh into gradients of the pair's sumLogp (dh/dlog π(y_w) = 1 = −dh/dlog π(y_l)), and reports TRL's metrics
 * with implicit rewards at `rewardBeta`.
 */
export function referenceMarginLoss(
  policy: ScoresByGroup,
  reference: ScoresByGroup,
  opts: { average: boolean; rewardBeta: number; batch?: BatchInfo | undefined },
  perExample: (h: number, i: number, p: PairLogps) => readonly [loss: number, dLossDh: number],
): ObjectiveResult {
  return targetPairLoss(policy, reference, opts, (p, dpc, dpr) => {
    const n = p.n;
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const [l, dh] = perExample(p.pc[i]! - p.pr[i]! - (p.rc[i]! - p.rr[i]!), i, p);
      loss += l;
      dpc[i] = dh / n;
      dpr[i] = -dh / n;
    }
    return { loss: loss / n, metrics: implicitRewardMetrics(p, opts.rewardBeta) };
  });
}
