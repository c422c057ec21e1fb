// Hyperparameter schemas, validation, and what each method asks the engine to score.
import { describe, expect, it } from 'vitest';
import {
  HyperparameterError,
  methodNames,
  objectives,
  resolveHyperparameters,
  validateHyperparameters,
} from '../src/index.js';

describe('schemas', () => {
  for (const m of methodNames) {
    it(`${m}: defaults agree with the schema and validate`, () => {
      const o = objectives[m];
      const fromSchema = Object.fromEntries(o.schema.map((s) => [s.name, s.default]));
      expect(o.defaults).toEqual(fromSchema);
      expect(validateHyperparameters(m, o.defaults)).toEqual([]);
      expect(validateHyperparameters(m, {})).toEqual([]);
      expect(validateHyperparameters(m, undefined)).toEqual([]);
      expect(resolveHyperparameters(m, {})).toEqual(o.defaults);
    });
  }

  it('the Table 7 / official-code defaults', () => {
    // Each default is a point of the paper's Table 7 search grid (values written here from the paper):
    // DPO β ∈ [0.01, 0.05, 0.1]
    expect(objectives.dpo.defaults).toEqual({ beta: 0.1, labelSmoothing: 0 });
    // IPO τ ∈ [0.01, 0.1, 0.5, 1.0]
    expect(objectives.ipo.defaults).toEqual({ tau: 0.1 });
    // rDPO ε ∈ [0.1, 0.5], β ∈ [0.01, 0.05, 0.1]
    expect(objectives.rdpo.defaults).toEqual({ beta: 0.1, epsilon: 0.1 });
    // CPO λ = 1.0, β ∈ [0.01, 0.05, 0.1]
    expect(objectives.cpo.defaults).toEqual({ beta: 0.1, lambda: 1 });
    // KTO β ∈ [0.01, 0.1, 1.0], λ_w = λ_l
    expect(objectives.kto.defaults).toEqual({ beta: 0.1, desirableWeight: 1, undesirableWeight: 1 });
    // ORPO λ ∈ [0.01, 0.1, 1.0]
    expect(objectives.orpo.defaults).toEqual({ lambda: 0.1 });
    // R-DPO α ∈ [0.05, 0.1, 0.5, 1.0], β ∈ [0.01, 0.05, 0.1]
    expect(objectives['r-dpo'].defaults).toEqual({ beta: 0.1, alpha: 0.05 });
    // SimPO β ∈ [2.0, 2.5], γ ∈ [1.0, 1.2, 1.4, 1.6]
    expect(objectives.simpo.defaults).toEqual({ beta: 2.5, gamma: 1.4 });
    // MPO: β 1.0 (paper Table 8, LLaMA-3.1); w 1 (official trainer.py l.235 `losses += en_retain_loss`);
    // pooling: hidden_states[-1].mean(dim=1) over the padded batch (official trainer.py l.178);
    // RG_d from the reference under no_grad (official trainer.py l.205, paper §3)
    expect(objectives.mpo.defaults).toEqual({
      beta: 1,
      w: 1,
      pooling: 'mean-unmasked',
      retain: true,
      lengthNormalize: true,
      constraint: 'hidden',
      rgdSource: 'reference',
    });
  });

  it('every baseline default lies in its Table 7 grid', () => {
    const grids: Record<string, Record<string, number[]>> = {
      dpo: { beta: [0.01, 0.05, 0.1] },
      ipo: { tau: [0.01, 0.1, 0.5, 1.0] },
      rdpo: { beta: [0.01, 0.05, 0.1], epsilon: [0.1, 0.5] },
      cpo: { beta: [0.01, 0.05, 0.1], lambda: [1.0] },
      kto: { beta: [0.01, 0.1, 1.0] },
      orpo: { lambda: [0.01, 0.1, 1.0] },
      'r-dpo': { alpha: [0.05, 0.1, 0.5, 1.0], beta: [0.01, 0.05, 0.1] },
      simpo: { beta: [2.0, 2.5], gamma: [1.0, 1.2, 1.4, 1.6] },
      mpo: { beta: [1.0, 1.5, 2.0] }, // paper Appendix G
    };
    for (const [method, grid] of Object.entries(grids)) {
      const d = objectives[method as keyof typeof objectives].defaults as Record<string, number>;
      for (const [k, values] of Object.entries(grid)) expect(values, `${method}.${k}`).toContain(d[k]);
    }
  });
});

describe('validateHyperparameters lists every problem', () => {
  it('unknown method', () => {
    expect(validateHyperparameters('dop', {})).toEqual([
      { path: 'method', reason: expect.stringContaining('unknown method "dop"') },
    ]);
  });
  it('several problems at once, with a path prefix', () => {
    const problems = validateHyperparameters(
      'mpo',
      { beta: 0, w: 'one', pooling: 'max', retain: 1, betta: 2, rgdSource: { constant: 'x' } },
      'hyperparameters',
    );
    expect(problems.map((p) => p.path).sort()).toEqual(
      [
        'hyperparameters.beta',
        'hyperparameters.betta',
        'hyperparameters.pooling',
        'hyperparameters.retain',
        'hyperparameters.rgdSource.constant',
        'hyperparameters.w',
      ].sort(),
    );
    expect(problems.find((p) => p.path.endsWith('.beta'))!.reason).toBe('must be > 0, got 0');
    expect(problems.find((p) => p.path.endsWith('.pooling'))!.reason).toMatch(/mean-unmasked, mean, last/);
  });
  it('ranges: rDPO ε < 0.5, DPO label smoothing in [0, 0.5)', () => {
    expect(validateHyperparameters('rdpo', { epsilon: 0.5 })).toEqual([
      { path: 'epsilon', reason: 'must be < 0.5, got 0.5' },
    ]);
    expect(validateHyperparameters('dpo', { labelSmoothing: -0.1 })).toHaveLength(1);
    expect(validateHyperparameters('kto', { desirableWeight: Number.NaN })).toHaveLength(1);
  });
  it('RG_d sources', () => {
    for (const ok of ['reference', 'policy', 'policy-detached', { constant: -0.5 }, { language: 'sw' }]) {
      expect(validateHyperparameters('mpo', { rgdSource: ok })).toEqual([]);
    }
    for (const bad of ['ref', { language: '' }, { constant: 1, language: 'zh' }, null, 3]) {
      expect(validateHyperparameters('mpo', { rgdSource: bad })).toHaveLength(1);
    }
  });
  it('not an object', () => {
    expect(validateHyperparameters('dpo', [0.1])).toEqual([
      { path: '(root)', reason: 'must be an object, got [0.1]' },
    ]);
    expect(validateHyperparameters('sft', { beta: 0.1 })[0]!.reason).toMatch(
      /unknown hyperparameter; expected one of: \(none\)/,
    );
  });
  it('resolveHyperparameters throws with all problems and fills defaults', () => {
    expect(resolveHyperparameters('dpo', { beta: 0.3 })).toEqual({ beta: 0.3, labelSmoothing: 0 });
    expect(resolveHyperparameters('dpo', { beta: undefined })).toEqual({ beta: 0.1, labelSmoothing: 0 });
    expect(() => resolveHyperparameters('dpo', { beta: -1, gamma: 2 })).toThrow(HyperparameterError);
    try {
      resolveHyperparameters('dpo', { beta: -1, gamma: 2 });
    } catch (e) {
      expect((e as HyperparameterError).problems).toHaveLength(2);
    }
  });
});

describe('requirements', () => {
  const names = (rs: { group: string }[]) => rs.map((r) => r.group).sort();

  it('MPO default: target pair through the LM head, dominant pair hidden-only; reference RG_d and hidden', () => {
    const r = objectives.mpo.requirements();
    expect(r.policy).toEqual([
      { group: 'targetChosen', sequence: { pair: 'target', response: 'chosen' }, sumLogp: true, grad: true },
      {
        group: 'targetRejected',
        sequence: { pair: 'target', response: 'rejected' },
        sumLogp: true,
        grad: true,
      },
      {
        group: 'dominantChosen',
        sequence: { pair: 'dominant', response: 'chosen' },
        sumLogp: false,
        hidden: 'mean-unmasked',
        grad: true,
      },
      {
        group: 'dominantRejected',
        sequence: { pair: 'dominant', response: 'rejected' },
        sumLogp: false,
        hidden: 'mean-unmasked',
        grad: true,
      },
    ]);
    expect(r.reference).toEqual([
      {
        group: 'dominantChosen',
        sequence: { pair: 'dominant', response: 'chosen' },
        sumLogp: true,
        hidden: 'mean-unmasked',
        grad: false,
      },
      {
        group: 'dominantRejected',
        sequence: { pair: 'dominant', response: 'rejected' },
        sumLogp: true,
        hidden: 'mean-unmasked',
        grad: false,
      },
    ]);
  });

  it('MPO ablations change what is scored', () => {
    expect(names(objectives.mpo.requirements({ retain: false }).policy)).toEqual([
      'targetChosen',
      'targetRejected',
    ]);
    expect(objectives.mpo.requirements({ retain: false, rgdSource: { constant: 1 } }).reference).toEqual([]);
    const pol = objectives.mpo.requirements({ rgdSource: 'policy' });
    expect(pol.policy.find((r) => r.group === 'dominantChosen')).toMatchObject({
      sumLogp: true,
      hidden: 'mean-unmasked',
      grad: true,
    });
    expect(pol.reference.find((r) => r.group === 'dominantChosen')).toMatchObject({
      sumLogp: false,
      hidden: 'mean-unmasked',
    });
    // MPO-Policy differentiates through RG_d even without the retain term; the detached variant does not.
    const polNoRetain = objectives.mpo.requirements({ rgdSource: 'policy', retain: false });
    expect(polNoRetain.policy.find((r) => r.group === 'dominantChosen')).toMatchObject({
      sumLogp: true,
      grad: true,
    });
    const detNoRetain = objectives.mpo.requirements({ rgdSource: 'policy-detached', retain: false });
    expect(detNoRetain.policy.find((r) => r.group === 'dominantChosen')).toMatchObject({
      sumLogp: true,
      grad: false,
    });
    const lang = objectives.mpo.requirements({ rgdSource: { language: 'ko' } });
    expect(lang.reference.find((r) => r.group === 'anchorChosen')).toEqual({
      group: 'anchorChosen',
      sequence: { pair: { language: 'ko' }, response: 'chosen' },
      sumLogp: true,
      grad: false,
    });
    const kl = objectives.mpo.requirements({ constraint: 'kl' });
    expect(kl.policy.find((r) => r.group === 'dominantRejected')).toMatchObject({ kl: true, grad: true });
    expect(kl.policy.find((r) => r.group === 'dominantRejected')!.hidden).toBeUndefined();
    expect(objectives.mpo.requirements({ pooling: 'last' }).policy[2]!.hidden).toBe('last');
  });

  it('baselines', () => {
    expect(names(objectives.sft.requirements().policy)).toEqual(['targetChosen']);
    for (const m of ['dpo', 'ipo', 'rdpo', 'r-dpo'] as const) {
      expect(names(objectives[m].requirements().reference)).toEqual(['targetChosen', 'targetRejected']);
    }
    for (const m of ['cpo', 'orpo', 'simpo'] as const)
      expect(objectives[m].requirements().reference).toEqual([]);
    const k = objectives.kto.requirements();
    expect(k.policy.find((r) => r.group === 'klMismatched')).toEqual({
      group: 'klMismatched',
      sequence: { pair: 'target', response: 'mismatched' },
      sumLogp: true,
      grad: false,
    });
    expect(names(k.reference)).toEqual(['klMismatched', 'targetChosen', 'targetRejected']);
  });
});
