import { describe, expect, it } from 'vitest';
import { bestTrial, type EvalRow, type ReportRun, renderReport } from '../src/report/render.js';

const ev = (asr: Record<string, number>, rg: Record<string, number>, ppl = 10): EvalRow[] => [
  ...Object.entries(asr).map(([language, value]) => ({
    benchmark: 'multijail',
    language,
    metric: 'asr',
    value,
    n: 10,
  })),
  {
    benchmark: 'multijail',
    language: 'avg',
    metric: 'asr',
    value: Object.values(asr).reduce((a, b) => a + b, 0) / Object.keys(asr).length,
    n: 20,
  },
  ...Object.entries(rg).map(([language, value]) => ({
    benchmark: 'reward-gap',
    language,
    metric: 'rg',
    value,
    n: 9,
  })),
  { benchmark: 'utility', language: 'en', metric: 'ppl', value: ppl, n: 100 },
  { benchmark: 'utility', language: 'zh', metric: 'ppl', value: ppl * 2, n: 100 },
];

const mpo: ReportRun = {
  id: 'r1',
  name: 'mpo-grid',
  method: 'mpo',
  label: 'MPO',
  metric: 'heldout/reward_gap_mean',
  mode: 'max',
  trials: [
    {
      index: 0,
      status: 'SUCCEEDED',
      hyperparameters: { beta: 1, 'training.learningRate': 1e-4 },
      bestMetric: 0.1,
      evaluations: ev({ en: 0.1, sw: 0.6 }, { en: 0.4, sw: 0.1 }),
    },
    {
      index: 1,
      status: 'SUCCEEDED',
      hyperparameters: { beta: 1.5, 'training.learningRate': 3e-4 },
      bestMetric: 0.3,
      evaluations: ev({ en: 0.1, sw: 0.4 }, { en: 0.4, sw: 0.3 }),
    },
    {
      index: 2,
      status: 'STOPPED',
      stopReason: 'rung 0',
      hyperparameters: { beta: 2 },
      bestMetric: 0.05,
      evaluations: [],
    },
  ],
};
const dpo: ReportRun = {
  id: 'r2',
  name: 'dpo',
  method: 'dpo',
  label: 'DPO',
  metric: 'm',
  mode: 'max',
  trials: [
    {
      index: 0,
      status: 'SUCCEEDED',
      hyperparameters: {},
      bestMetric: 0,
      evaluations: ev({ en: 0.2, sw: 0.8 }, { en: 0.3, sw: 0 }),
    },
  ],
};
const ablation: ReportRun = {
  ...mpo,
  id: 'r3',
  name: 'mpo-noretain',
  label: 'MPO w/o Retain',
  trials: [mpo.trials[0]!],
};

describe('report', () => {
  it('picks the best evaluated trial by the run metric and mode', () => {
    expect(bestTrial(mpo)?.index).toBe(1);
    expect(bestTrial({ ...mpo, mode: 'min' })?.index).toBe(0);
  });

  it('renders Table 2 (ASR %), Table 1 (before/after), utility, ablation and the sweep', () => {
    const md = renderReport({
      runs: [mpo, dpo, ablation],
      baseline: ev({ en: 0.2, sw: 0.9 }, { en: 0.38, sw: 0.02 }, 12),
      command: 'mpo report r1 r2 r3',
    });
    // Table 2: base row then one row per method, the average as the last column: (0.1 + 0.4)/2 = 25.0%.
    expect(md).toContain('| Method | en | sw | Avg. |');
    expect(md).toContain('| Base model | 20.0 | 90.0 | 55.0 |');
    expect(md).toContain('| MPO | 10.0 | 40.0 | 25.0 |');
    expect(md).toContain('| DPO | 20.0 | 80.0 | 50.0 |');
    // Table 1 for the first run's best trial.
    expect(md).toContain('| sw | 0.020 | 0.300 | 90.0 | 40.0 |');
    expect(md).toContain('| Base model | 12.00 | 24.00 |');
    expect(md).toContain('| MPO w/o Retain | 35.0 | 60.0 | 0.100 | 10.00 |');
    // The sweep: sorted by metric, the stopped trial with its reason, and the spread.
    expect(md.indexOf('| 1 | beta=1.5')).toBeLessThan(md.indexOf('| 0 | beta=1'));
    expect(md).toContain('STOPPED (rung 0)');
    expect(md).toContain('ASR avg over 2 trials: mean 30.0%, min 25.0%, max 35.0%.');
    expect(md).toContain('mpo report r1 r2 r3');
  });
});

describe('report: one cutoff and the generations behind the ASR', () => {
  it('states the cutoff the sweep metric and the evaluated reward gap share, and shows judged responses', () => {
    const focus: ReportRun = {
      ...mpo,
      cutoff: 192,
      trials: [
        {
          ...mpo.trials[1]!,
          id: 't1',
          generations: [
            {
              benchmark: 'multijail',
              language: 'sw',
              promptId: '7',
              prompt: 'How do I | pick\na lock?',
              response: 'Sure, first...',
              verdict: 'unsafe',
            },
            {
              benchmark: 'multijail',
              language: 'en',
              promptId: '3',
              prompt: 'p',
              response: 'I cannot help.',
              verdict: 'safe',
            },
          ],
        },
      ],
    };
    const md = renderReport({ runs: [focus] });
    expect(md).toMatch(
      /cut at 192 tokens, the training cutoff: the sweep's held-out metric and this evaluated/,
    );
    expect(md).toMatch(/get max\(512, 192\) = 512 tokens/);
    expect(md).toContain('## What the judge saw: generations of trial 1');
    expect(md).toContain('| en | safe | 3 | p | I cannot help. |');
    // one line per cell, table pipes escaped
    expect(md).toContain('| sw | unsafe | 7 | How do I \\| pick a lock? | Sure, first... |');
    expect(md).toContain('GET /runs/r1/generations?trialId=t1');
    // No generations, no section; no cutoff, no note.
    const plain = renderReport({ runs: [mpo] });
    expect(plain).not.toContain('What the judge saw');
    expect(plain).not.toContain('training cutoff');
  });
});
