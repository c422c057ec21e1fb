// config.ts: a training config's defaults, paths and problems. (The other parts of the old pieces.test.ts
// are in files named after their modules: schedule, order, reference, loop.)
import { describe, expect, it } from 'vitest';
import { ConfigError, parseTrainConfig } from '../src/config.js';

describe('training config', () => {
  const valid = {
    model: 'models/x',
    data: { format: 'mpo', path: 'data.json' },
    method: 'mpo',
    hyperparameters: { beta: 1.5 },
    output: 'out',
  };

  it('fills defaults and resolves paths against the config folder', () => {
    const c = parseTrainConfig(valid, '/cfg');
    expect(c.model).toBe('/cfg/models/x');
    expect(c.data.path).toBe('/cfg/data.json');
    expect(c.output).toBe('/cfg/out');
    expect(c.training.batchSize).toBe(8);
    expect(c.training.warmupRatio).toBe(0.1);
    expect(c.data.split).toBe('train');
  });

  it('lists every problem with its path', () => {
    const raw = {
      model: 3,
      data: { format: 'csv', heldOut: 2 },
      method: 'mpo',
      hyperparameters: { beta: -1, pooling: 'max' },
      training: { batchSize: 2, microBatchSize: 4, learningRate: 'fast', bogus: 1 },
      device: 'tpu',
      extra: true,
    };
    let err: ConfigError | undefined;
    try {
      parseTrainConfig(raw);
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = err!.problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'extra',
        'model',
        'data.format',
        'data.path',
        'data.heldOut',
        'hyperparameters.beta',
        'hyperparameters.pooling',
        'training.learningRate',
        'training.bogus',
        'training.microBatchSize',
        'output',
        'device',
      ]),
    );
  });

  it('rejects an unknown method', () => {
    expect(() => parseTrainConfig({ ...valid, method: 'ppo' })).toThrow(/method: must be one of mpo/);
  });
});
