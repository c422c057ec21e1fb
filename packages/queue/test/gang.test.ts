// Gang reservation (src/gang.ts) on the real Redis: all seats or none, one seat per host, the deadline,
// and concurrent joiners racing for the last seat.

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import {
  beatSeat,
  cancelGang,
  deadSeats,
  gangHostEnv,
  gangRankEnv,
  joinGang,
  olderOpenGang,
  openGang,
  openGangIds,
  readGang,
  startGang,
} from '../src/index.js';
import { testRedis } from './redis-helpers.js';

const { redis, prefix, cleanup } = testRedis('gang');
afterAll(cleanup);

const spec = { hosts: 3, ranksPerHost: 2, store: '10.0.0.1:29500', reservationMs: 60_000 };
const coordinator = { agentId: 'agent-a', hostId: 'host-a' };

describe('gang reservation', () => {
  it('fills seat by seat on distinct hosts, leaves the open list when full, then starts', async () => {
    await openGang(redis, prefix, 'g1', spec, coordinator);
    expect(await openGangIds(redis, prefix)).toContain('g1');
    expect(await joinGang(redis, prefix, 'g1', { agentId: 'agent-a2', hostId: 'host-a' })).toEqual({
      ok: false,
      reason: 'same-host',
    });
    expect(await joinGang(redis, prefix, 'g1', { agentId: 'agent-b', hostId: 'host-b' })).toEqual({
      ok: true,
      hostRank: 1,
    });
    expect((await readGang(redis, prefix, 'g1'))!.state).toBe('open');
    expect(await joinGang(redis, prefix, 'g1', { agentId: 'agent-c', hostId: 'host-c' })).toEqual({
      ok: true,
      hostRank: 2,
    });
    const g = (await readGang(redis, prefix, 'g1'))!;
    expect(g.state).toBe('full');
    expect(g.seats.map((s) => s.hostId)).toEqual(['host-a', 'host-b', 'host-c']);
    expect(await openGangIds(redis, prefix)).not.toContain('g1');
    expect(await joinGang(redis, prefix, 'g1', { agentId: 'agent-d', hostId: 'host-d' })).toEqual({
      ok: false,
      reason: 'full',
    });
    expect(await startGang(redis, prefix, 'g1')).toBe('started');
    // The ranks' environment: host 2's second rank is global rank 5 of 6.
    expect(gangRankEnv(g, 2, 1, 'grp')).toMatchObject({
      RANK: '5',
      WORLD_SIZE: '6',
      MPO_HOSTS: '3',
      MPO_HOST_RANK: '2',
      LOCAL_RANK: '1',
      LOCAL_WORLD_SIZE: '2',
      MPO_C10D_STORE: '10.0.0.1:29500',
    });
    // A rank died: the coordinator cancels, every seat holder sees it.
    expect(await cancelGang(redis, prefix, 'g1')).toBe('cancelled');
  });

  it('past the deadline nobody joins, and the coordinator cancel releases everyone; a gang never starts unfilled', async () => {
    const t0 = 1_000_000;
    await openGang(redis, prefix, 'g2', { ...spec, reservationMs: 5_000 }, coordinator, t0);
    expect((await joinGang(redis, prefix, 'g2', { agentId: 'b', hostId: 'host-b' }, t0 + 1_000)).ok).toBe(
      true,
    );
    expect(await joinGang(redis, prefix, 'g2', { agentId: 'c', hostId: 'host-c' }, t0 + 6_000)).toEqual({
      ok: false,
      reason: 'expired',
    });
    expect(await startGang(redis, prefix, 'g2')).toBe('open'); // not full: start refused
    expect(await cancelGang(redis, prefix, 'g2')).toBe('cancelled');
    expect(await joinGang(redis, prefix, 'g2', { agentId: 'c', hostId: 'host-c' }, t0 + 2_000)).toEqual({
      ok: false,
      reason: 'cancelled',
    });
    expect(await openGangIds(redis, prefix)).not.toContain('g2');
    await expect(openGang(redis, prefix, 'g2', spec, coordinator)).rejects.toThrow(/already exists/);
    expect(await joinGang(redis, prefix, 'nope', { agentId: 'c', hostId: 'host-c' })).toEqual({
      ok: false,
      reason: 'missing',
    });
  });

  it('concurrent joiners: exactly the free seats are taken, each once', async () => {
    await openGang(redis, prefix, 'g3', { ...spec, hosts: 3 }, coordinator);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        joinGang(redis, prefix, 'g3', { agentId: `j${i}`, hostId: `h${i}` }),
      ),
    );
    const won = results.filter((r) => r.ok);
    expect(won.map((r) => (r.ok ? r.hostRank : -1)).sort()).toEqual([1, 2]);
    expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'full')).toBe(true);
    expect((await readGang(redis, prefix, 'g3'))!.seats).toHaveLength(3);
  });

  it('rejects a gang of one host', async () => {
    await expect(openGang(redis, prefix, 'g4', { ...spec, hosts: 1 }, coordinator)).rejects.toThrow(
      /at least 2 hosts/,
    );
  });

  it('seat liveness: a seat not renewed within its TTL is dead; host env gives the global rank offset', async () => {
    await openGang(
      redis,
      prefix,
      'g5',
      { ...spec, device: 'cpu', config: '/a/train-config.json' },
      coordinator,
    );
    const g = (await readGang(redis, prefix, 'g5'))!;
    expect(g).toMatchObject({ device: 'cpu', config: '/a/train-config.json' });
    expect(await deadSeats(redis, prefix, 'g5', 3)).toEqual([0, 1, 2]);
    await beatSeat(redis, prefix, 'g5', 0, 10_000);
    await beatSeat(redis, prefix, 'g5', 2, 150);
    expect(await deadSeats(redis, prefix, 'g5', 3)).toEqual([1]);
    await sleep(300);
    expect(await deadSeats(redis, prefix, 'g5', 3)).toEqual([1, 2]);
    expect(gangHostEnv(g, 2)).toEqual({
      rankOffset: 4,
      worldSize: 6,
      env: { MPO_HOSTS: '3', MPO_HOST_RANK: '2', MPO_C10D_STORE: '10.0.0.1:29500' },
    });
  });

  it('olderOpenGang: the younger of two waiting gangs finds the older one it could join instead', async () => {
    const cpu = { ...spec, hosts: 2, ranksPerHost: 1, device: 'cpu' };
    await openGang(redis, prefix, 'old', cpu, { agentId: 'x', hostId: 'host-x' }, 1_000);
    await openGang(redis, prefix, 'young', cpu, { agentId: 'y', hostId: 'host-y' }, 2_000);
    await openGang(redis, prefix, 'gpu', { ...cpu, device: 'gpu' }, { agentId: 'z', hostId: 'host-z' }, 500);
    const young = (await readGang(redis, prefix, 'young'))!;
    const old = (await readGang(redis, prefix, 'old'))!;
    expect((await olderOpenGang(redis, prefix, young, 'host-y'))?.id).toBe('old');
    // The older one never gives way (the GPU gang is older but of another device).
    expect(await olderOpenGang(redis, prefix, old, 'host-x')).toBeNull();
    // A gang needing more slots per host than the younger opener holds is not a place for it.
    expect(await olderOpenGang(redis, prefix, { ...young, ranksPerHost: 0 }, 'host-y')).toBeNull();
    // Nor one that already has a seat on its host.
    expect(await olderOpenGang(redis, prefix, young, 'host-x')).toBeNull();
  });
});
