// training.lora in run specs: accepted as given (the trainer fills PEFT's defaults), carried into
// every trial's train job, and rejected field by field when wrong.
import { describe, expect, it } from 'vitest';
import { parseTrainJobData, trainJobData, validateRunSpec } from '../src/index.js';
import { roots, validSpec } from './fixtures.js';

const ctx = roots();
const withLora = (lora: unknown) => {
  const s = validSpec() as Record<string, unknown> & { training: Record<string, unknown> };
  return { ...s, training: { ...s.training, lora } };
};

describe('training.lora in run specs', () => {
  it('is kept in the normalized spec and in each trial job', () => {
    const lora = { rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'v_proj', 'down_proj'] };
    const r = validateRunSpec(withLora(lora), ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.spec.training.lora).toEqual(lora);
    const job = trainJobData('00000000-0000-4000-8000-000000000001', r.spec, {
      trialId: '00000000-0000-4000-8000-000000000002',
      plan: r.trials[0]!,
    });
    expect(parseTrainJobData(job).training.lora).toEqual(lora);
    const plain = validateRunSpec(validSpec(), ctx);
    if (!plain.ok) throw new Error(JSON.stringify(plain.problems));
    expect(plain.spec.training.lora).toBeUndefined();
  });

  it('names each bad field', () => {
    const r = validateRunSpec(withLora({ rank: 0, dropout: 1, targetModules: ['qkv'], r: 8 }), ctx);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.problems.map((p) => p.path);
    for (const p of [
      'training.lora.rank',
      'training.lora.dropout',
      'training.lora.targetModules[0]',
      'training.lora.r',
    ])
      expect(paths, JSON.stringify(r.problems)).toContain(p);
  });
});
