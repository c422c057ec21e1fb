// coalesce.ts: progress updates coalesced to the latest value.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Coalescer } from '../src/coalesce.js';

describe('coalescing progress', () => {
  it('sends the latest value, one call at a time', async () => {
    const sent: number[] = [];
    const c = new Coalescer<number>(
      async (v) => {
        sent.push(v);
        await sleep(20);
      },
      () => {},
    );
    for (let i = 1; i <= 50; i++) c.push(i);
    await c.settle();
    expect(sent[0]).toBe(1);
    expect(sent.at(-1)).toBe(50);
    expect(sent.length).toBeLessThan(5);
  });
});
