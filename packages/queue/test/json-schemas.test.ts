// The published JSON Schema files are what the TypeBox sources render (run `npm run schemas` after a schema
// change), and every example spec names its schema by `$schema` and satisfies it.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  PUBLISHED_SCHEMA_NAMES,
  publishedSchemaText,
  RunSpecSchema,
  schemaProblems,
  TrainConfigSchema,
} from '../src/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describe('published JSON Schemas', () => {
  it('are up to date with the TypeBox sources (npm run schemas rewrites them)', () => {
    expect(PUBLISHED_SCHEMA_NAMES.sort()).toEqual(['run-spec', 'train-config']);
    for (const name of PUBLISHED_SCHEMA_NAMES) {
      const file = join(repo, 'schemas', `${name}.schema.json`);
      expect(readFileSync(file, 'utf8'), `${file} is stale: run npm run schemas`).toBe(
        publishedSchemaText(name),
      );
    }
  });

  it('list the training config fields under one set of names in both schemas', () => {
    const train = JSON.parse(publishedSchemaText('train-config')!);
    const spec = JSON.parse(publishedSchemaText('run-spec')!);
    const trainFields = Object.keys(train.properties.training.properties);
    expect(trainFields).toEqual(expect.arrayContaining(['maxSteps', 'microBatchSize', 'zeroStage']));
    const specFields = Object.keys(spec.properties.training.properties);
    expect(specFields).toEqual(expect.arrayContaining(trainFields));
    expect(spec.properties.training.properties.steps.description).toMatch(/deprecated: use maxSteps/);
    expect(train.properties.training.properties.maxSteps.maximum).toBe(10_000_000);
  });

  it('are named by $schema in every example spec, which they accept', () => {
    const dir = join(repo, 'examples', 'demo');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const spec = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      expect(resolve(dir, spec.$schema), f).toBe(join(repo, 'schemas', 'run-spec.schema.json'));
      expect(schemaProblems(RunSpecSchema, spec), f).toEqual([]);
      expect(Object.keys(spec.training), f).not.toContain('steps');
      expect(Object.keys(spec.training), f).not.toContain('microBatch');
    }
  });

  it('accept a training config with $schema and the trainer names', () => {
    const config = {
      $schema: '../schemas/train-config.schema.json',
      model: 'builtin:tiny-multilingual',
      data: { path: 'builtin:mpo-llama' },
      output: 'out',
      training: { maxSteps: 10, microBatchSize: 2, batchSize: 4, zeroStage: 1 },
      dtype: 'bf16',
      preset: 'llama3.1-8b',
    };
    expect(schemaProblems(TrainConfigSchema, config)).toEqual([]);
    expect(schemaProblems(TrainConfigSchema, { ...config, training: { steps: 10 } })).toEqual([
      { path: 'training.steps', reason: 'unknown field' },
    ]);
  });
});
