// Scoring an objective's groups for a set of examples, shared by the training step (policy, with gradients) and
// the reference precompute (no gradients), so that both lay out their batches the same way.
//
// Most groups are scored as one engine batch over the examples. The exception is 'mean-unmasked' pooling, the
// official MPO code's hidden_states[-1].mean(dim=1) (circle-hit/MPO trainer.py l.178): a mean over every position
// of the padded batch, so it depends on what the sequence was padded with. The official trainer runs one example
// per device and its collator pads the example's chosen and rejected sequences together, on the right, to a
// multiple of 8 (workflow.py l.76, pad_to_multiple_of=8). Here each example's chosen and rejected of such a pair are
// scored together, padded to L = roundUp(max(|chosen|, |rejected|), 8): the pooled state is a function of the
// example alone, identical for the policy and the reference, whatever the micro-batch or the data order.
import type { GradsByGroup, GroupName, GroupRequest, ScoreGrads, ScoresByGroup } from '@mpo/objectives';
import { enginePooling, type ScoreOptions, type ScoreResult, type TrainableModel } from './model.js';
import { concatScores } from './reference.js';
import { buildBatch, sequenceOf } from './sequences.js';
import type { TrainExample } from './types.js';

/** The official collator's pad_to_multiple_of. */
export const PAD_MULTIPLE = 8;

/** One engine call whose gradients go back through `backwardUnits`. */
interface Unit {
  handle: number;
  /** Which group each of the call's rows belongs to, and the example (index into the scored list) it is. */
  rows: Array<{ group: GroupName; index: number } | null>;
}

export interface Scored {
  scores: ScoresByGroup;
  units: Unit[];
  /** Tokens fed through the model (for tokens/s), fillers included. */
  tokens: number;
}

type Pair = [chosen: GroupRequest, rejected: GroupRequest];

/** Requests that must be scored per example as a padded chosen/rejected pair (mean-unmasked pooling). */
export function paddedPairs(requests: readonly GroupRequest[]): { pairs: Pair[]; single: GroupRequest[] } {
  const pairs: Pair[] = [];
  const paired = new Set<GroupRequest>();
  for (const c of requests) {
    if (c.hidden !== 'mean-unmasked' || c.sequence.response !== 'chosen') continue;
    const key = JSON.stringify(c.sequence.pair);
    const r = requests.find(
      (x) =>
        x.hidden === 'mean-unmasked' &&
        x.sequence.response === 'rejected' &&
        JSON.stringify(x.sequence.pair) === key,
    );
    if (!r) continue;
    pairs.push([c, r]);
    paired.add(c).add(r);
  }
  return { pairs, single: requests.filter((r) => !paired.has(r)) };
}

function options(reqs: readonly GroupRequest[], grad: boolean, klReference?: TrainableModel): ScoreOptions {
  const pooling = [...new Set(reqs.flatMap((r) => (r.hidden ? [enginePooling[r.hidden]] : [])))];
  const kl = reqs.some((r) => r.kl === true);
  return {
    grad: grad && reqs.some((r) => r.grad),
    lmHead: reqs.some((r) => r.sumLogp || r.kl === true),
    pooling,
    ...(kl && klReference ? { reference: klReference } : {}),
  };
}

/**
 * Scores `requests` over `examples`. With `grad`, requests with grad: true keep their graphs (see backwardUnits);
 * without, nothing is kept. `chunk` bounds the examples per engine call of a single group (the reference pass).
 */
export async function scoreGroups(
  model: TrainableModel,
  examples: readonly TrainExample[],
  requests: readonly GroupRequest[],
  opts: { grad: boolean; chunk?: number; klReference?: TrainableModel },
): Promise<Scored> {
  const out: Scored = { scores: {}, units: [], tokens: 0 };
  const { pairs, single } = paddedPairs(requests);
  const chunk = opts.chunk ?? Math.max(1, examples.length);
  for (const req of single) {
    const parts: ScoreResult[] = [];
    for (let i = 0; i < examples.length; i += chunk) {
      const exs = examples.slice(i, i + chunk);
      const batch = buildBatch(exs, req.sequence);
      const res = await model.score(batch, options([req], opts.grad, opts.klReference));
      out.tokens += batch.sequences.reduce((n, s) => n + s.length, 0);
      if (res.handle !== undefined) {
        out.units.push({ handle: res.handle, rows: exs.map((_, k) => ({ group: req.group, index: i + k })) });
      }
      parts.push(res);
    }
    out.scores[req.group] = parts.length === 1 ? parts[0]! : concatScores(parts);
  }
  for (const [c, r] of pairs) {
    const chosen: ScoreResult[] = [];
    const rejected: ScoreResult[] = [];
    for (const [index, ex] of examples.entries()) {
      const batch = paddedPairBatch(ex, c, r);
      const res = await model.score(batch, options([c, r], opts.grad));
      out.tokens += batch.sequences.reduce((n, s) => n + s.length, 0);
      if (res.handle !== undefined) {
        const rows = [
          { group: c.group, index },
          { group: r.group, index },
        ];
        out.units.push({ handle: res.handle, rows: batch.sequences.length > 2 ? [...rows, null] : rows });
      }
      chosen.push(rowOf(res, 0));
      rejected.push(rowOf(res, 1));
    }
    out.scores[c.group] = concatScores(chosen);
    out.scores[r.group] = concatScores(rejected);
  }
  return out;
}

/**
 * The example's chosen and rejected sequences of a pair, plus, when the longer is not a multiple of 8 long, a
 * filler row of length L that makes the engine pad both to L (its scores are dropped, its gradient is zero).
 */
export function paddedPairBatch(ex: TrainExample, c: GroupRequest, r: GroupRequest) {
  const sc = sequenceOf(ex, c.sequence);
  const sr = sequenceOf(ex, r.sequence);
  const longer = sc.ids.length >= sr.ids.length ? sc : sr;
  const padded = Math.ceil(longer.ids.length / PAD_MULTIPLE) * PAD_MULTIPLE;
  const sequences = [sc.ids, sr.ids];
  const promptLengths = [sc.promptLength, sr.promptLength];
  if (padded > longer.ids.length) {
    const last = longer.ids[longer.ids.length - 1]!;
    sequences.push([...longer.ids, ...new Array<number>(padded - longer.ids.length).fill(last)]);
    promptLengths.push(longer.promptLength);
  }
  return { sequences, promptLengths };
}

/** Row `i` of a score result as a one-row result. */
function rowOf(s: ScoreResult, i: number): ScoreResult {
  const H = s.hiddenSize;
  const out: ScoreResult = {
    n: 1,
    hiddenSize: H,
    sumLogp: s.sumLogp.slice(i, i + 1),
    tokens: s.tokens.slice(i, i + 1),
  };
  if (s.lastHidden) out.lastHidden = s.lastHidden.slice(i * H, (i + 1) * H);
  if (s.meanHidden) out.meanHidden = s.meanHidden.slice(i * H, (i + 1) * H);
  if (s.meanUnmaskedHidden) out.meanUnmaskedHidden = s.meanUnmaskedHidden.slice(i * H, (i + 1) * H);
  if (s.kl) out.kl = s.kl.slice(i, i + 1);
  return out;
}

const PER_ROW = ['sumLogp', 'kl'] as const;
const PER_HIDDEN = ['lastHidden', 'meanHidden', 'meanUnmaskedHidden'] as const;

/**
 * Sends each unit's share of `grads` (scaled by `scale`) back through the engine; a unit none of whose rows has a
 * gradient is released. Rows of a unit without a gradient (fillers, detached groups) get zeros.
 */
export async function backwardUnits(
  model: TrainableModel,
  scored: Scored,
  grads: GradsByGroup,
  scale: number,
): Promise<void> {
  for (const unit of scored.units) {
    const g = unitGrads(unit, grads, scored.scores, scale);
    if (g) await model.backward(unit.handle, g);
    else model.release(unit.handle);
  }
}

function unitGrads(unit: Unit, grads: GradsByGroup, scores: ScoresByGroup, scale: number): ScoreGrads | null {
  const n = unit.rows.length;
  const out: ScoreGrads = {};
  let any = false;
  unit.rows.forEach((row, k) => {
    if (!row) return;
    const g = grads[row.group];
    if (!g) return;
    const H = scores[row.group]!.hiddenSize;
    for (const f of PER_ROW) {
      const src = g[f];
      if (!src) continue;
      out[f] ??= new Float64Array(n);
      out[f][k] = src[row.index]! * scale;
      any = true;
    }
    for (const f of PER_HIDDEN) {
      const src = g[f];
      if (!src) continue;
      out[f] ??= new Float32Array(n * H);
      for (let j = 0; j < H; j++) out[f][k * H + j] = src[row.index * H + j]! * scale;
      any = true;
    }
  });
  return any ? out : null;
}
