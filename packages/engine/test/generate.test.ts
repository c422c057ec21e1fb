// Generation: greedy with and without the KV cache equals a by-hand argmax loop; EOS; sampling.
import { afterAll, describe, expect, it } from 'vitest';
import { Model } from '../src/index.js';
import { randomTokens, tinyConfig } from './helpers.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});
const cfg = tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true });
// A larger init std makes the next-token distributions peaked enough that greedy ties are impossible.
const model = () => {
  const m = Model.init(cfg, { seed: 12, std: 0.5, threads: 2 });
  models.push(m);
  return m;
};
const prompts = [
  randomTokens(1, 5, 64),
  randomTokens(2, 11, 64),
  randomTokens(3, 1, 64),
  randomTokens(4, 8, 64),
];

async function byHand(m: Model, prompt: number[], n: number, eos: number[] = []): Promise<number[]> {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const lg = await m.logits(seq);
    let best = 0;
    for (let v = 1; v < lg.length; v++) if (lg[v]! > lg[best]!) best = v;
    out.push(best);
    seq.push(best);
    if (eos.includes(best)) break;
  }
  return out;
}

describe('generate', () => {
  it('greedy equals argmax by hand, with and without the KV cache, batched (left padding) or not', async () => {
    const m = model();
    const want = await Promise.all(prompts.map((p) => byHand(m, p, 12)));
    const cached = await m.generate(prompts, { maxNewTokens: 12, eosTokenIds: [] });
    const uncached = await m.generate(prompts, { maxNewTokens: 12, eosTokenIds: [], kvCache: false });
    expect(cached).toEqual(want);
    expect(uncached).toEqual(want);
    for (let i = 0; i < prompts.length; i++) {
      expect(await m.generate([prompts[i]!], { maxNewTokens: 12, eosTokenIds: [] })).toEqual([want[i]]);
    }
  });

  it('greedy argmax also agrees with score(): the chosen token has the highest log-probability', async () => {
    const m = model();
    const p = prompts[1]!;
    const [first] = (await m.generate([p], { maxNewTokens: 1, eosTokenIds: [] }))[0]!;
    const cands = Array.from({ length: cfg.vocabSize }, (_, v) => [...p, v]);
    const r = await m.score({ sequences: cands, promptLengths: cands.map(() => p.length) });
    let best = 0;
    for (let v = 1; v < cfg.vocabSize; v++) if (r.sumLogp[v]! > r.sumLogp[best]!) best = v;
    expect(first).toBe(best);
  });

  it('stops at an EOS id (included) and at maxNewTokens', async () => {
    const m = model();
    const free = await m.generate(prompts, { maxNewTokens: 10, eosTokenIds: [] });
    const eos = free[0]![3]!;
    const stopped = await m.generate(prompts, { maxNewTokens: 10, eosTokenIds: [eos] });
    const firstEos = free[0]!.indexOf(eos);
    expect(stopped[0]).toEqual(free[0]!.slice(0, firstEos + 1));
    for (let i = 1; i < prompts.length; i++) {
      const k = free[i]!.indexOf(eos);
      expect(stopped[i]).toEqual(k < 0 ? free[i] : free[i]!.slice(0, k + 1));
    }
    expect(
      (await m.generate(prompts, { maxNewTokens: 0, eosTokenIds: [] })).every((g) => g.length === 0),
    ).toBe(true);
  });

  it('sampling is reproducible per seed whatever the batching, and top-p -> 0 is greedy', async () => {
    const m = model();
    const o = { maxNewTokens: 8, eosTokenIds: [], temperature: 1.5, topP: 0.95, seed: 42 };
    const a = await m.generate(prompts, o);
    const b = await m.generate(prompts, o);
    expect(b).toEqual(a);
    m.setThreads(1); // one batch of 4 instead of two batches of 2: same samples
    expect(await m.generate(prompts, o)).toEqual(a);
    m.setThreads(2);
    const c = await m.generate(prompts, { ...o, seed: 43 });
    expect(c).not.toEqual(a);
    const greedy = await m.generate(prompts, { maxNewTokens: 8, eosTokenIds: [] });
    expect(await m.generate(prompts, { ...o, topP: 1e-9 })).toEqual(greedy);
  });
});
