import { describe, expect, it } from 'vitest';
import {
  confinePath,
  expandTrials,
  gridSize,
  hostsOf,
  localSlots,
  ProblemsError,
  parseRunSpec,
  type RunSpec,
  trainJobData,
  validateRunSpec,
} from '../src/index.js';
import { roots, validSpec } from './fixtures.js';

const ctx = roots();

describe('run spec validation', () => {
  it('normalizes a valid spec: defaults filled, paths root-relative, trials planned', () => {
    const r = validateRunSpec(validSpec(), ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.spec.model).toEqual({ kind: 'path', path: 'llama-1b' });
    expect(r.spec.data).toEqual([{ kind: 'path', path: 'mpo.json' }]);
    expect(r.spec.eval).toEqual({
      benchmarks: ['reward-gap', 'multijail'],
      languages: ['en', 'zh', 'ko'],
      maxPrompts: 100,
      judge: 'builtin',
    });
    expect(r.spec.training).toMatchObject({ steps: 100, cutoff: 1024, seed: 42, learningRate: 1e-5 });
    expect(r.spec.search.maxTrials).toBe(6);
    expect(r.trials).toHaveLength(6);
    expect(r.trials[1]).toMatchObject({
      index: 1,
      params: { beta: 0.5, 'training.learningRate': 3e-5 },
      hyperparameters: { w: 1, beta: 0.5 },
      totalSteps: 100,
    });
    expect(r.trials[1]!.training.learningRate).toBe(3e-5);
  });

  it('accepts builtin ids and data lists with formats', () => {
    const spec = {
      ...validSpec(),
      model: 'builtin:tiny-multilingual',
      data: ['builtin:mpo-llama', { path: 'mpo.json', format: 'mpo' }],
    };
    const { spec: s } = parseRunSpec(spec, { ...ctx, builtinModels: ['tiny-multilingual'] });
    expect(s.model).toEqual({ kind: 'builtin', id: 'tiny-multilingual' });
    expect(s.data).toEqual([
      { kind: 'builtin', id: 'mpo-llama' },
      { kind: 'path', path: 'mpo.json', format: 'mpo' },
    ]);
  });

  it('lists every problem with its path, not just the first', () => {
    const spec = {
      name: '',
      model: '../../etc',
      data: [{ path: 'escape/secret.json' }, 'builtin:Bad Id', 'missing.json'],
      dominantLanguage: 'English',
      targetLanguages: ['zh', 'en'],
      method: 'mpo',
      hyperparameters: { beta: -1, bogus: 2 },
      search: {
        strategy: 'grid',
        space: {
          beta: { type: 'loguniform', min: 0.1, max: 1 },
          pooling: ['mean', 'max'],
          'training.lr': [1],
        },
        metric: 'rg',
        mode: 'up',
        surprise: true,
      },
      resources: { ranksPerTrial: 3, device: 'tpu' },
      eval: { benchmarks: [], judge: 'human' },
      training: { steps: 10, batchSize: 8 },
    };
    const r = validateRunSpec(spec, ctx);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p.reason]));
    expect(Object.keys(byPath).sort()).toEqual(
      [
        'name',
        'model',
        'data[0].path',
        'data[1]',
        'data[2]',
        'dominantLanguage',
        'hyperparameters.beta',
        'hyperparameters.bogus',
        'search.space.beta',
        'search.space.pooling[1]',
        'search.space.training.lr',
        'search.mode',
        'search.surprise',
        'resources.device',
        'eval.benchmarks',
        'eval.judge',
        'training.batchSize',
      ].sort(),
    );
    expect(byPath.model).toMatch(/inside the model root/);
    expect(byPath['data[0].path']).toMatch(/symlink/);
    expect(byPath['data[2]']).toMatch(/does not exist/);
    expect(byPath['search.space.beta']).toMatch(/grid search needs a list/);
    expect(byPath['search.surprise']).toBe('unknown field');
    expect(byPath['training.batchSize']).toMatch(/divisible by resources.ranksPerTrial \(3\)/);
  });

  it('reports cross-field problems: dominant among targets, ASHA consistency, steps vs epochs', () => {
    const spec = {
      ...validSpec(),
      targetLanguages: ['zh', 'en'],
      search: {
        strategy: 'asha',
        space: { beta: { type: 'uniform', min: 2, max: 1 } },
        metric: 'rg',
        mode: 'max',
        asha: { minSteps: 100, maxSteps: 50 },
      },
      training: { steps: 10, epochs: 2 },
    };
    const r = validateRunSpec(spec, ctx);
    if (r.ok) throw new Error('expected problems');
    expect(r.problems.map((p) => p.path).sort()).toEqual(
      [
        'targetLanguages[1]',
        'search.space.beta.max',
        'search.maxTrials',
        'search.asha.maxSteps',
        'training.epochs',
        'training.steps',
      ].sort(),
    );
  });

  it('checkpoints every 500 steps by default (transformers TrainingArguments.save_steps), at most the trial length', () => {
    const { checkpointEvery: _c, ...training } = validSpec().training;
    const long = parseRunSpec({ ...validSpec(), training: { ...training, steps: 2000 } }, ctx);
    expect(long.spec.training.checkpointEvery).toBe(500);
    expect(long.trials[0]!.training.checkpointEvery).toBe(500);
    const short = parseRunSpec({ ...validSpec(), training: { ...training, steps: 20 } }, ctx);
    expect(short.spec.training.checkpointEvery).toBe(20);
    // Given explicitly, it is kept (0 still means: only at the end).
    const none = parseRunSpec(
      { ...validSpec(), training: { ...training, steps: 20, checkpointEvery: 0 } },
      ctx,
    );
    expect(none.spec.training.checkpointEvery).toBe(0);
  });

  it('rejects a body that is not an object', () => {
    for (const body of [null, 'spec', [1]]) {
      const r = validateRunSpec(body, ctx);
      expect(r.ok).toBe(false);
    }
    expect(() => parseRunSpec({}, ctx)).toThrow(ProblemsError);
  });
});

describe('root confinement', () => {
  it('keeps paths inside the root, lexically and through symlinks', () => {
    expect(confinePath(ctx.dataRoot, 'mpo.json')).toBe('mpo.json');
    expect(confinePath(ctx.dataRoot, `${ctx.dataRoot}/mpo.json`)).toBe('mpo.json');
    expect(confinePath(ctx.dataRoot, 'sub/../mpo.json')).toBe('mpo.json');
    expect(() => confinePath(ctx.dataRoot, '../outside/secret.json')).toThrow(/inside the root/);
    expect(() => confinePath(ctx.dataRoot, '/etc/passwd')).toThrow(/inside the root/);
    expect(() => confinePath(ctx.dataRoot, 'escape/secret.json')).toThrow(/symlink/);
    expect(() => confinePath(ctx.dataRoot, 'nope.json', { mustExist: true })).toThrow(/does not exist/);
    expect(() => confinePath(ctx.dataRoot, 'a\0b')).toThrow(/NUL/);
    // A sibling whose name starts with the root's is still outside it.
    expect(() => confinePath(ctx.dataRoot, `${ctx.dataRoot}-evil/x`)).toThrow(/inside the root/);
  });
});

const withSearch = (search: Partial<RunSpec['search']>): RunSpec =>
  ({
    ...parseRunSpec(validSpec(), ctx).spec,
    search: { strategy: 'random', space: {}, maxTrials: 1, metric: 'm', mode: 'max', seed: 0, ...search },
  }) as RunSpec;

describe('sweep expansion', () => {
  it('grid: cartesian product, last key fastest, capped by maxTrials', () => {
    const space = {
      a: { type: 'choice' as const, values: [1, 2] },
      b: { type: 'choice' as const, values: ['x', 'y', 'z'] },
    };
    expect(gridSize(space)).toBe(6);
    const all = expandTrials(withSearch({ strategy: 'grid', space, maxTrials: 100 }));
    expect(all.map((t) => t.params)).toEqual([
      { a: 1, b: 'x' },
      { a: 1, b: 'y' },
      { a: 1, b: 'z' },
      { a: 2, b: 'x' },
      { a: 2, b: 'y' },
      { a: 2, b: 'z' },
    ]);
    expect(expandTrials(withSearch({ strategy: 'grid', space, maxTrials: 4 })).map((t) => t.params)).toEqual(
      all.slice(0, 4).map((t) => t.params),
    );
    expect(expandTrials(withSearch({ strategy: 'grid', space: {}, maxTrials: 5 }))).toHaveLength(1);
  });

  it('random: seeded, within bounds, stable prefix when maxTrials grows', () => {
    const space = {
      lr: { type: 'loguniform' as const, min: 1e-6, max: 1e-3 },
      w: { type: 'uniform' as const, min: 0.5, max: 2 },
      k: { type: 'int' as const, min: 1, max: 4 },
      p: { type: 'choice' as const, values: ['mean', 'last'] },
    };
    const a = expandTrials(withSearch({ space, maxTrials: 200, seed: 7 }));
    const again = expandTrials(withSearch({ space, maxTrials: 200, seed: 7 }));
    const other = expandTrials(withSearch({ space, maxTrials: 200, seed: 8 }));
    const fewer = expandTrials(withSearch({ space, maxTrials: 50, seed: 7 }));
    expect(again.map((t) => t.params)).toEqual(a.map((t) => t.params));
    expect(other.map((t) => t.params)).not.toEqual(a.map((t) => t.params));
    expect(fewer.map((t) => t.params)).toEqual(a.slice(0, 50).map((t) => t.params));
    for (const t of a) {
      const { lr, w, k, p } = t.params as { lr: number; w: number; k: number; p: string };
      expect(lr).toBeGreaterThanOrEqual(1e-6);
      expect(lr).toBeLessThan(1e-3);
      expect(w).toBeGreaterThanOrEqual(0.5);
      expect(w).toBeLessThan(2);
      expect([1, 2, 3, 4]).toContain(k);
      expect(['mean', 'last']).toContain(p);
    }
    // loguniform: about half the draws fall below the geometric midpoint (≈3.2e-5), not 0.1%.
    const below = a.filter((t) => (t.params.lr as number) < Math.sqrt(1e-6 * 1e-3)).length;
    expect(below).toBeGreaterThan(70);
    expect(below).toBeLessThan(130);
    expect(new Set(a.map((t) => t.params.k)).size).toBe(4);
  });

  it('asha: every trial runs for maxSteps unless stopped', () => {
    const { spec, trials } = parseRunSpec(
      {
        ...validSpec(),
        search: {
          strategy: 'asha',
          space: { beta: { type: 'loguniform', min: 0.1, max: 10 } },
          metric: 'heldout/reward_gap',
          mode: 'max',
          maxTrials: 9,
          seed: 3,
          asha: { minSteps: 10, maxSteps: 270 },
        },
        training: { checkpointEvery: 10 },
      },
      ctx,
    );
    expect(spec.search.asha).toEqual({ minSteps: 10, maxSteps: 270, reductionFactor: 3 });
    expect(spec.training.steps).toBe(270);
    expect(trials).toHaveLength(9);
    expect(trials.every((t) => t.totalSteps === 270)).toBe(true);
  });
});

describe('resources.ranks and ranksPerHost (trials spanning hosts)', () => {
  const withResources = (resources: Record<string, unknown>) => ({ ...validSpec(), resources });
  const problems = (resources: Record<string, unknown>) => {
    const r = validateRunSpec(withResources(resources), ctx);
    return r.ok ? {} : Object.fromEntries(r.problems.map((p) => [p.path, p.reason]));
  };

  it('ranks is ranksPerTrial; ranksPerHost below it makes the train jobs span ranks / ranksPerHost hosts', () => {
    const { spec, trials } = parseRunSpec(withResources({ ranks: 4, ranksPerHost: 2 }), ctx);
    expect(spec.resources).toEqual({ ranksPerTrial: 4, device: 'cpu', ranksPerHost: 2 });
    const slots = trainJobData('00000000-0000-4000-8000-000000000000', spec, {
      trialId: '00000000-0000-4000-8000-000000000001',
      plan: trials[0]!,
    }).slots;
    expect(slots).toEqual({ device: 'cpu', count: 4, ranksPerHost: 2 });
    expect(hostsOf(slots)).toBe(2);
    expect(localSlots(slots)).toEqual({ device: 'cpu', count: 2 });
    // ranksPerHost equal to the ranks: one host, the job as before.
    const one = parseRunSpec(withResources({ ranks: 2, ranksPerHost: 2 }), ctx).spec;
    expect(one.resources).toEqual({ ranksPerTrial: 2, device: 'cpu' });
    expect(hostsOf({ device: 'cpu', count: 2 })).toBe(1);
  });

  it('rejects ranksPerHost that does not divide the ranks, and ranks that contradict ranksPerTrial', () => {
    expect(problems({ ranks: 4, ranksPerHost: 3 })['resources.ranksPerHost']).toMatch(
      /must divide resources.ranks \(4\), got 3/,
    );
    expect(problems({ ranks: 4, ranksPerTrial: 2 })['resources.ranks']).toMatch(
      /must equal resources.ranksPerTrial \(2\)/,
    );
    expect(problems({ ranks: 2, ranksPerHost: 0 })['resources.ranksPerHost']).toBeDefined();
    // batchSize 8 (the fixture) is not divisible by 3 ranks, whichever field says 3.
    expect(problems({ ranks: 3 })['training.batchSize']).toMatch(/divisible/);
  });
});
