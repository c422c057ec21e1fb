import { describe, expect, it } from 'vitest';
import { metricRows, metricValue, parseTrainerLine, TrainerOutputParser } from '../src/index.js';

const sha = 'a'.repeat(64);

describe('trainer JSON-lines protocol', () => {
  it('parses every message type', () => {
    const lines = [
      { type: 'start', totalSteps: 300, resumedFrom: null },
      { type: 'step', step: 1, totalSteps: 300, loss: 0.7, metrics: { lr: 1e-5, rg: { zh: 0.3, ko: -0.1 } } },
      { type: 'eval', step: 100, metrics: { 'heldout/reward_gap': { zh: 0.5, ko: 0.1 } } },
      { type: 'checkpoint', step: 100, path: '/ckpt/step-100', bytes: 1234, sha256: sha },
      {
        type: 'done',
        step: 300,
        totalSteps: 300,
        stopped: false,
        checkpoint: { step: 300, path: '/c', bytes: 1, sha256: sha },
      },
      { type: 'error', message: 'out of memory' },
    ];
    for (const l of lines) expect(parseTrainerLine(JSON.stringify(l))).toEqual({ ok: true, message: l });
  });

  it('reports malformed lines instead of throwing', () => {
    expect(parseTrainerLine('')).toBeNull();
    expect(parseTrainerLine('loading weights...')).toEqual({
      ok: false,
      line: 'loading weights...',
      reason: 'not JSON',
    });
    const bad = parseTrainerLine(
      JSON.stringify({ type: 'checkpoint', step: 1, path: '/x', bytes: 1, sha256: 'xyz' }),
    );
    expect(bad).toMatchObject({ ok: false });
    expect(bad && !bad.ok && bad.reason).toMatch(/sha256/);
    expect(parseTrainerLine(JSON.stringify({ type: 'warp', step: 1 }))).toMatchObject({ ok: false });
  });

  it('splits a stream into lines across chunk boundaries', () => {
    const p = new TrainerOutputParser();
    const text = `${JSON.stringify({ type: 'step', step: 1, totalSteps: 2, loss: 1, metrics: {} })}\n${JSON.stringify({ type: 'step', step: 2, totalSteps: 2, loss: 0.5, metrics: {} })}`;
    const out = [
      ...p.push(text.slice(0, 10)),
      ...p.push(text.slice(10, 70)),
      ...p.push(text.slice(70)),
      ...p.end(),
    ];
    expect(out.map((o) => o.ok && o.message.type === 'step' && o.message.step)).toEqual([1, 2]);
  });

  it('flattens per-language metrics into rows and reads a sweep metric', () => {
    const step = {
      type: 'step' as const,
      step: 7,
      totalSteps: 10,
      loss: 0.25,
      metrics: { lr: 2e-5, rg: { zh: 0.5, ko: 0.1 }, gradNorm: null },
    };
    expect(metricRows(step)).toEqual([
      { step: 7, name: 'loss', language: null, value: 0.25 },
      { step: 7, name: 'lr', language: null, value: 2e-5 },
      { step: 7, name: 'rg', language: 'zh', value: 0.5 },
      { step: 7, name: 'rg', language: 'ko', value: 0.1 },
    ]);
    expect(metricValue(step.metrics, 'lr')).toBe(2e-5);
    expect(metricValue(step.metrics, 'rg')).toBeCloseTo(0.3);
    expect(metricValue(step.metrics, 'rg:ko')).toBe(0.1);
    expect(metricValue(step.metrics, 'missing')).toBeUndefined();
    expect(metricValue(step.metrics, 'gradNorm')).toBeNaN();
  });

  it('gives each (name, step, language) one row: the step loss wins over a metric named loss', () => {
    // Under K ranks the objective's own "loss" metric is rank 0's share; the step's loss is the sum.
    const step = {
      type: 'step' as const,
      step: 3,
      totalSteps: 10,
      loss: 0.7,
      metrics: { loss: 0.35, lr: 1 },
    };
    expect(metricRows(step)).toEqual([
      { step: 3, name: 'loss', language: null, value: 0.7 },
      { step: 3, name: 'lr', language: null, value: 1 },
    ]);
  });
});
