// The default pooling is the official MPO code's mean over the padded sequence (circle-hit/MPO
// src/llamafactory/train/dpo/trainer.py l.178, hidden_states[-1].mean(dim=1); collator pad_to_multiple_of=8,
// workflow.py l.76). It depends on the padding, so policy and reference must pad identically: then the retain term
// is exactly 0 before the first update, whatever the micro-batch size and data order.
import { Model } from '@mpo/engine';
import type { ScoreGrads } from '@mpo/objectives';
import { getObjective } from '@mpo/objectives';
import { describe, expect, it } from 'vitest';
import { parseTrainConfig, runTraining, type StepRecord, type TrainExample } from '../src/index.js';
import type { ScoreBatch, TrainableModel } from '../src/model.js';
import { backwardUnits, PAD_MULTIPLE, paddedPairBatch, scoreGroups } from '../src/scoring.js';
import { byteEncoders, mpoData, tinyModel, tmp } from './helpers.js';

const config = (micro: number, hyperparameters: Record<string, unknown> = {}) => ({
  model: tinyModel(4),
  data: { format: 'mpo', path: mpoData, limit: 12, heldOut: 0.1 },
  method: 'mpo',
  hyperparameters,
  // Long enough that the dominant sequences differ in length (a shorter cutoff truncates them all alike).
  cutoff: 480,
  output: tmp(`pad${micro}`),
  threads: 1,
  training: { batchSize: 4, microBatchSize: micro, learningRate: 1e-3, maxSteps: 2, seed: 11 },
});

async function steps(micro: number, h: Record<string, unknown> = {}): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  await runTraining(parseTrainConfig(config(micro, h)), {
    encoders: byteEncoders,
    hooks: { onStep: (s) => void out.push(s) },
  });
  return out;
}

describe("MPO's default pooling (official: mean over the padded pair)", () => {
  it('is the default, and L2 = 0 exactly at step 0 for every micro-batch size', async () => {
    expect(getObjective('mpo').defaults).toMatchObject({ pooling: 'mean-unmasked' });
    for (const micro of [1, 2, 4]) {
      const [first, second] = await steps(micro);
      expect(first!.metrics['loss/retain'], `micro ${micro}`).toBe(0);
      // After an update the policy has moved: the term is live.
      expect(second!.metrics['loss/retain'], `micro ${micro}`).toBeGreaterThan(0);
    }
  });

  it('the masked mean and last-token options also start at 0', async () => {
    for (const pooling of ['mean', 'last']) {
      const [first] = await steps(2, { pooling });
      expect(first!.metrics['loss/retain'], pooling).toBe(0);
    }
  });

  it('MPO-Policy (rgdSource "policy") sends its RG_d gradient through the model; policy-detached does not', async () => {
    const weights = async (rgdSource: string) => {
      const r = await runTraining(
        parseTrainConfig({ ...config(2, { rgdSource }), output: tmp(`pol-${rgdSource}`) }),
        {
          encoders: byteEncoders,
        },
      );
      return (r.model as unknown as Model).paramBuffer();
    };
    const [withGrad, detached] = [await weights('policy'), await weights('policy-detached')];
    let diff = 0;
    for (let i = 0; i < withGrad.length; i++) diff = Math.max(diff, Math.abs(withGrad[i]! - detached[i]!));
    expect(diff).toBeGreaterThan(1e-6);
  });

  it("routes each group's gradients to its rows of the padded-pair calls, zero for the filler", async () => {
    const calls: Array<{ handle: number; n: number; grads?: ScoreGrads }> = [];
    const model = {
      async score(batch: ScoreBatch) {
        const n = batch.sequences.length;
        calls.push({ handle: calls.length + 1, n });
        return {
          n,
          hiddenSize: 2,
          sumLogp: new Float64Array(n).fill(-1),
          tokens: new Int32Array(n).fill(1),
          meanUnmaskedHidden: new Float32Array(2 * n),
          handle: calls.length,
        };
      },
      async backward(handle: number, grads: ScoreGrads) {
        calls[handle - 1]!.grads = grads;
      },
      release() {},
    } as unknown as TrainableModel;
    const exs: TrainExample[] = [
      {
        id: 'a',
        lang: 'zh',
        target: { prompt: [1], chosen: [2], rejected: [3] },
        dominant: { prompt: [1, 1], chosen: [5, 5, 5], rejected: [6] },
      },
      {
        id: 'b',
        lang: 'zh',
        target: { prompt: [1], chosen: [2], rejected: [3] },
        dominant: { prompt: [1, 1, 1, 1], chosen: [5, 5, 5, 5], rejected: [6, 6] },
      },
    ];
    const reqs = getObjective('mpo')
      .requirements({ rgdSource: 'policy' })
      .policy.filter((q) => q.group.startsWith('dominant'));
    const scored = await scoreGroups(model, exs, reqs, { grad: true });
    // example a: lengths 5 and 3 → filler of 8; example b: 8 and 6 → no filler
    expect(calls.map((c) => c.n)).toEqual([3, 2]);
    await backwardUnits(
      model,
      scored,
      {
        dominantChosen: { sumLogp: Float64Array.of(1, 2), meanUnmaskedHidden: Float32Array.of(1, 1, 2, 2) },
        dominantRejected: { sumLogp: Float64Array.of(3, 4), meanUnmaskedHidden: Float32Array.of(3, 3, 4, 4) },
      },
      0.5,
    );
    expect([...calls[0]!.grads!.sumLogp!]).toEqual([0.5, 1.5, 0]);
    expect([...calls[0]!.grads!.meanUnmaskedHidden!]).toEqual([0.5, 0.5, 1.5, 1.5, 0, 0]);
    expect([...calls[1]!.grads!.sumLogp!]).toEqual([1, 2]);
    expect([...calls[1]!.grads!.meanUnmaskedHidden!]).toEqual([1, 1, 2, 2]);
  });

  it("pads each example's dominant chosen and rejected together to a multiple of 8", () => {
    const ex = (c: number, r: number): TrainExample => ({
      id: 'x',
      lang: 'zh',
      target: { prompt: [1], chosen: [2], rejected: [3] },
      dominant: { prompt: [1, 1], chosen: new Array(c).fill(5), rejected: new Array(r).fill(6) },
    });
    const [c, r] = getObjective('mpo')
      .requirements({})
      .policy.filter((q) => q.group.startsWith('dominant'));
    // |prompt| 2 + 9 = 11 and 2 + 4 = 6 → both padded to 16 by a filler row of 16
    const b = paddedPairBatch(ex(9, 4), c!, r!);
    expect(b.sequences.map((s) => s.length)).toEqual([11, 6, 16]);
    expect(PAD_MULTIPLE).toBe(8);
    // 2 + 14 = 16 is already a multiple of 8: no filler
    expect(paddedPairBatch(ex(14, 3), c!, r!).sequences.map((s) => s.length)).toEqual([16, 5]);
  });

  it('the pooled state of an example does not depend on the other examples of its micro-batch', async () => {
    const m = Model.init(tinyModel(4).init as never, { seed: 4, threads: 1 });
    const exs: TrainExample[] = [3, 17, 8].map((len, i) => ({
      id: `e${i}`,
      lang: 'zh',
      target: { prompt: [1], chosen: [2], rejected: [3] },
      dominant: { prompt: [256, 10 + i], chosen: new Array(len).fill(40 + i), rejected: [50, 51, 257] },
    }));
    const reqs = getObjective('mpo')
      .requirements({})
      .reference.filter((q) => q.group.startsWith('dominant'));
    const together = await scoreGroups(m, exs, reqs, { grad: false });
    const alone = await scoreGroups(m, exs.slice(1, 2), reqs, { grad: false });
    const H = m.config.hiddenSize;
    const row = together.scores.dominantChosen!.meanUnmaskedHidden!.slice(H, 2 * H);
    expect([...row]).toEqual([...alone.scores.dominantChosen!.meanUnmaskedHidden!]);
    m.dispose?.();
  });
});
