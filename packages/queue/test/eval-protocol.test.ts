// The eval protocol's parser (eval-protocol.ts); this test lived in apps/worker/test/units.test.ts
// while the parser was the worker's own.
import { describe, expect, it } from 'vitest';
import { parseEvalLine } from '../src/index.js';

describe('eval result lines', () => {
  it('parses results, errors and other lines', () => {
    expect(
      parseEvalLine(
        '{"type":"result","benchmark":"multijail","language":"zh","metric":"asr","value":0.25,"n":100}',
      ),
    ).toEqual({
      kind: 'result',
      result: { benchmark: 'multijail', language: 'zh', metric: 'asr', value: 0.25, n: 100 },
    });
    expect(parseEvalLine('')).toBeNull();
    expect(parseEvalLine('{"type":"progress","done":3}')).toEqual({ kind: 'other' });
    expect(parseEvalLine('{"type":"error","message":"boom"}')).toEqual({ kind: 'error', message: 'boom' });
    expect(parseEvalLine('nope')).toEqual({ kind: 'bad', reason: 'not JSON' });
    const bad = parseEvalLine(
      '{"type":"result","benchmark":"","language":"zh","metric":"asr","value":null,"n":1.5}',
    );
    expect(bad).toEqual({
      kind: 'bad',
      reason:
        'benchmark must be a non-empty string; value must be a finite number; n must be a non-negative integer',
    });
  });
});
