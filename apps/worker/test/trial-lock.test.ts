// trial-lock.ts: one agent per trial folder.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireTrialLock, LOCK_FILE } from '../src/trial-lock.js';
import { scratch } from './helpers.js';

describe('trial folder lock', () => {
  const me = { agentId: 'a', host: 'h1', pid: process.pid, jobId: 'j' };

  it('is exclusive while its owner lives, and taken over once it is gone', async () => {
    const s = scratch('lock');
    const dir = join(s.dir, 'trial');
    const first = await acquireTrialLock(dir, me, async () => true);
    expect(first.ok).toBe(true);
    const second = await acquireTrialLock(dir, { ...me, agentId: 'b' }, async () => true);
    expect(second).toMatchObject({ ok: false, owner: { agentId: 'a', pid: process.pid } });
    if (first.ok) first.release();
    expect((await acquireTrialLock(dir, { ...me, agentId: 'b' }, async () => true)).ok).toBe(true);

    // A dead pid on this host, or a silent agent on another host, holds nothing.
    const dead = join(s.dir, 'dead');
    mkdirSync(dead);
    writeFileSync(join(dead, LOCK_FILE), JSON.stringify({ ...me, pid: 2 ** 22 + 1, token: 't', at: 0 }));
    expect((await acquireTrialLock(dead, me, async () => true)).ok).toBe(true);
    const remote = join(s.dir, 'remote');
    mkdirSync(remote);
    writeFileSync(join(remote, LOCK_FILE), JSON.stringify({ ...me, host: 'h2', token: 't', at: 0 }));
    expect((await acquireTrialLock(remote, me, async () => true)).ok).toBe(false);
    expect((await acquireTrialLock(remote, me, async () => false)).ok).toBe(true);

    // A restarted container: same host, same pid (often 1), but an earlier process start.
    const restarted = join(s.dir, 'restarted');
    mkdirSync(restarted);
    writeFileSync(
      join(restarted, LOCK_FILE),
      JSON.stringify({ ...me, instance: 'an-earlier-start', token: 't', at: 0 }),
    );
    expect((await acquireTrialLock(restarted, me, async () => true)).ok).toBe(true);
  });
});
