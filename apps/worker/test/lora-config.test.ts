// A run spec's training.lora reaches the trainer config (validated by the trainer's own parser).
import { describe, expect, it } from 'vitest';
import { buildTrainConfig, JobConfigError } from '../src/trainer-config.js';
import { scratch, trainData } from './helpers.js';

const RUN = '00000000-0000-4000-8000-000000000001';
const TRIAL = '00000000-0000-4000-8000-000000000002';

describe('payload → trainer config: lora', () => {
  const s = scratch('lora-config');
  const roots = { modelRoot: s.modelRoot, dataRoot: s.dataRoot, artifactRoot: s.artifactRoot };

  it('passes training.lora through as the config lora field', () => {
    const lora = { rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'o_proj'] };
    const plan = buildTrainConfig(trainData(RUN, TRIAL, { training: { steps: 10, lora } }), roots);
    expect(plan.config.lora).toEqual(lora);
    expect(
      buildTrainConfig(trainData(RUN, TRIAL, { training: { steps: 10 } }), roots).config.lora,
    ).toBeUndefined();
  });

  it("fails the job with the trainer's problem list when lora is wrong", () => {
    const bad = trainData(RUN, TRIAL, { training: { steps: 10, lora: { rank: 0 } } });
    expect(() => buildTrainConfig(bad, roots)).toThrow(JobConfigError);
    expect(() => buildTrainConfig(bad, roots)).toThrow(/lora\.rank/);
  });
});
