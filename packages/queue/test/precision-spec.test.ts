// training.dtype and training.activationCheckpointing in run specs (issue 14): accepted, kept in the
// normalized spec and the job data, and fp16 refused where it cannot run.
import { describe, expect, it } from 'vitest';
import { TrainJobDataSchema, validateRunSpec } from '../src/index.js';
import { roots, validSpec } from './fixtures.js';

const ctx = roots();
const withTraining = (extra: Record<string, unknown>, resources?: Record<string, unknown>) => {
  const s = validSpec() as Record<string, unknown> & { training: Record<string, unknown> };
  return { ...s, training: { ...s.training, ...extra }, ...(resources ? { resources } : {}) };
};

describe('precision fields of a run spec', () => {
  it('keeps dtype and activationCheckpointing in the normalized training and every trial', () => {
    const r = validateRunSpec(withTraining({ dtype: 'bf16', activationCheckpointing: true }), ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.spec.training).toMatchObject({ dtype: 'bf16', activationCheckpointing: true });
    for (const t of r.trials)
      expect(t.training).toMatchObject({ dtype: 'bf16', activationCheckpointing: true });
  });

  it('leaves them out when not given (fp32 without checkpointing downstream)', () => {
    const r = validateRunSpec(validSpec(), ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.spec.training.dtype).toBeUndefined();
    expect(r.spec.training.activationCheckpointing).toBeUndefined();
  });

  it('refuses an unknown dtype and fp16 off the GPU, saying where and why', () => {
    const bad = validateRunSpec(withTraining({ dtype: 'fp8', activationCheckpointing: 'yes' }), ctx);
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    const paths = bad.problems.map((p) => p.path).sort();
    expect(paths).toEqual(['training.activationCheckpointing', 'training.dtype']);
    const cpu = validateRunSpec(withTraining({ dtype: 'fp16' }), ctx);
    expect(cpu.ok).toBe(false);
    if (cpu.ok) return;
    expect(cpu.problems).toEqual([
      {
        path: 'training.dtype',
        reason: 'fp16 needs resources.device "gpu" (the CPU has no fp16 GEMM; use bf16 or fp32)',
      },
    ]);
    expect(validateRunSpec(withTraining({ dtype: 'fp16' }, { device: 'gpu' }), ctx).ok).toBe(true);
  });

  it('the train job schema carries them (a job for such a trial is not rejected as unknown fields)', () => {
    const training = TrainJobDataSchema.properties.training;
    expect(training.additionalProperties).toBe(false);
    expect(training.properties.dtype.anyOf.map((t: { const: string }) => t.const)).toEqual([
      'fp32',
      'bf16',
      'fp16',
    ]);
    expect(training.properties.activationCheckpointing.type).toBe('boolean');
  });
});
