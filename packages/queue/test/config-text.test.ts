// JSON and YAML config text: values, syntax errors with file/line/column, and
// the line of a problem's path.
import { describe, expect, it } from 'vitest';
import { ConfigSyntaxError, locateProblems, parseConfigText, pathSegments } from '../src/config-text.js';

const YAML_SPEC = `# a run spec in YAML
name: sweep-1
model: builtin:tiny-multilingual
data:
  - builtin:mpo-llama
  - path: extra.jsonl
training:
  steps: 0
  learningRate: 1.0e-6
`;

describe('parseConfigText', () => {
  it('reads YAML and JSON to the same value', () => {
    const y = parseConfigText(YAML_SPEC, 'spec.yaml');
    expect(y.format).toBe('yaml');
    const j = parseConfigText(JSON.stringify(y.value, null, 2), 'spec.json');
    expect(j.format).toBe('json');
    expect(j.value).toEqual(y.value);
    expect(y.value).toMatchObject({ data: ['builtin:mpo-llama', { path: 'extra.jsonl' }] });
    expect((y.value as { training: { learningRate: number } }).training.learningRate).toBe(1e-6);
  });

  it('names the line and column of a path, in YAML and JSON', () => {
    const y = parseConfigText(YAML_SPEC, 'spec.yaml');
    expect(y.position('training.steps')).toEqual({ line: 8, column: 10 });
    expect(y.position('data[1].path')).toEqual({ line: 6, column: 11 });
    // A missing field: the deepest part found (the `training` block).
    expect(y.position('training.batchSize')?.line).toBe(8);
    expect(locateProblems(y, [{ path: 'training.steps', reason: 'must be >= 1' }])).toEqual([
      'spec.yaml:8:10: training.steps: must be >= 1',
    ]);
    const j = parseConfigText('{\n  "name": "x",\n  "training": {\n    "steps": 0\n  }\n}\n', 'c.json');
    expect(j.position('training.steps')).toEqual({ line: 4, column: 14 });
  });

  it('reports syntax errors with file, line and column', () => {
    const bad = (text: string, source: string) => {
      try {
        parseConfigText(text, source);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigSyntaxError);
        return (err as ConfigSyntaxError).message;
      }
      throw new Error('no error');
    };
    expect(bad('name: a\ntraining:\n  steps: [1, 2\n', 'spec.yaml')).toMatch(
      /^spec\.yaml:[34]:\d+: invalid YAML/,
    );
    expect(bad('a: 1\na: 2\n', 'dup.yml')).toMatch(/^dup\.yml:2:1: invalid YAML: Map keys must be unique/);
    expect(bad('{\n  "a": 1,\n  "b": \n}', 'x.json')).toMatch(/^x\.json:4:1: invalid JSON/);
    // JSON that YAML would accept (a comment) is still refused as JSON, at the comment.
    expect(bad('{\n  "a": 1 # no\n}', 'y.json')).toMatch(/^y\.json:2:\d+: invalid JSON/);
  });

  it('splits dotted paths with indices', () => {
    expect(pathSegments('search.space.beta.min')).toEqual(['search', 'space', 'beta', 'min']);
    expect(pathSegments('data[1].path')).toEqual(['data', 1, 'path']);
    expect(pathSegments('')).toEqual([]);
  });
});
