// Functions short enough to read at once (the developers' guide): a production
// function over 80 lines says why at its top ("// Long: ..."), so a new long
// one is a decision, not an accident.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

describe('function length', () => {
  it('leaves no production function over 80 lines without a reason', () => {
    const r = spawnSync(process.execPath, [resolve(root, 'scripts/long-functions.mjs'), '--max', '80'], {
      encoding: 'utf8',
    });
    expect(r.stdout).toMatch(/functions over 80 lines without a reason: \d+/);
    expect(r.stdout.split('\n\n')[0], r.stdout).toBe('functions over 80 lines without a reason: 0');
    expect(r.status).toBe(0);
  });
});
