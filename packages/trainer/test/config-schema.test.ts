// The example training configs (examples/train, JSON and YAML) name their schema by `$schema` and are what
// parseTrainConfig accepts; the schema's bounds reach `mpo train` (one schema for configs and run specs).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfigText } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import { type ConfigError, parseTrainConfig } from '../src/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const examples = join(repo, 'examples', 'train');

describe('training config schema in mpo train', () => {
  it('accepts the example configs, JSON and YAML alike, which name the published schema', () => {
    const parsed = ['tiny-mpo.json', 'tiny-mpo.yaml'].map((f) => {
      const file = join(examples, f);
      const raw = parseConfigText(readFileSync(file, 'utf8'), file).value as Record<string, unknown>;
      expect(resolve(examples, raw.$schema as string)).toBe(
        join(repo, 'schemas', 'train-config.schema.json'),
      );
      return parseTrainConfig(raw, examples);
    });
    expect(parsed[1]).toEqual(parsed[0]);
    expect(parsed[0]!.training).toMatchObject({ maxSteps: 20, microBatchSize: 2, batchSize: 8 });
    expect(parsed[0]!.output).toBe(join(repo, 'runs', 'tiny-mpo'));
  });

  it('refuses what the run spec refuses: steps beyond 10M, the spec-only names', () => {
    const raw = JSON.parse(readFileSync(join(examples, 'tiny-mpo.json'), 'utf8'));
    const problems = (training: object) => {
      try {
        parseTrainConfig({ ...raw, training }, examples);
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(problems({ maxSteps: 10_000_001 })).toEqual([
      { path: 'training.maxSteps', reason: 'must be ≤ 10000000, got 10000001' },
    ]);
    expect(problems({ steps: 5 })).toEqual([{ path: 'training.steps', reason: 'unknown field' }]);
  });
});
