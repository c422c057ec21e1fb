import { describe, expect, it } from 'vitest';
import { rankScript, run, shmLeftovers, waitUntil } from './helpers.js';

describe('failures', () => {
  it('mismatched sizes reject on every rank with a clear message', async () => {
    const r = run({ ranks: 2, env: { MPO_TEST_SCENARIO: 'mismatch' } });
    const { lines } = await r.done;
    for (const l of lines) {
      const res = l.at(-1);
      expect(res?.ok).toBe(false);
      expect(res?.error).toMatch(/size mismatch/);
      expect(res?.error).toMatch(/rank 0 called allReduce\(100 float32/);
      expect(res?.error).toMatch(/rank 1 called allReduce\(101 float32/);
    }
    expect(shmLeftovers(r.launched.group)).toEqual([]);
  });

  it('a SIGKILLed rank makes the others fail fast, naming it; nothing is left in /dev/shm', async () => {
    const timeoutMs = 4000;
    const r = run({
      ranks: 3,
      env: { MPO_TEST_SCENARIO: 'loop', MPO_TEST_TIMEOUT_MS: String(timeoutMs), MPO_TEST_SIZE: '100000' },
    });
    const victim = r.launched.ranks[1];
    await r.waitFor(1, (j) => j.running === true);
    await r.waitFor(0, (j) => j.running === true);
    await r.waitFor(2, (j) => j.running === true);
    const t0 = Date.now();
    process.kill(victim?.pid as number, 'SIGKILL');
    const e0 = await r.waitFor(0, (j) => j.ok === false);
    const e2 = await r.waitFor(2, (j) => j.ok === false);
    const elapsed = Date.now() - t0;
    for (const e of [e0, e2]) {
      expect(e.error).toMatch(/rank 1\b/);
      expect(e.blamed).toBe(1);
      expect(Number(e.sinceLastMs)).toBeLessThan(timeoutMs);
    }
    expect(e0.error).toMatch(/died|killed/);
    expect(elapsed).toBeLessThan(timeoutMs);
    const { exitCode } = await r.done;
    expect(exitCode).toBe(137); // rank 1 was killed first
    expect(shmLeftovers(r.launched.group)).toEqual([]);
  });

  it('a rank killed before joining: the others fail at the join timeout, naming it, and unlink', async () => {
    const r = run({
      ranks: 3,
      env: { MPO_TEST_SCENARIO: 'join-only', MPO_TEST_TIMEOUT_MS: '3000' },
      command: 'sh',
      args: ['-c', `[ "$RANK" = 2 ] && kill -9 $$; exec "${process.execPath}" "$0"`, rankScript],
    });
    const { lines } = await r.done;
    for (const rank of [0, 1]) {
      const res = lines[rank]?.at(-1);
      // (on a very loaded machine rank 1 may be late too: "ranks 1, 2 never joined")
      expect(res?.joinError).toMatch(
        /timed out after 3000 ms joining group '.*': ranks? (1, )?2 never joined/,
      );
    }
    expect(lines[2]).toEqual([]);
    expect(shmLeftovers(r.launched.group)).toEqual([]);
  });

  it('a stalled rank (alive, never calls) times out the others without blocking their event loop', async () => {
    const timeoutMs = 1500;
    const r = run({ ranks: 2, env: { MPO_TEST_SCENARIO: 'stall', MPO_TEST_TIMEOUT_MS: String(timeoutMs) } });
    await r.waitFor(1, (j) => j.stalled === true);
    const e = await r.waitFor(0, (j) => j.ok === false, 20_000);
    expect(e.error).toMatch(/timed out after 1500 ms waiting for rank 1 \(pid \d+, still alive/);
    expect(e.blamed).toBe(1);
    expect(Number(e.waitedMs)).toBeGreaterThanOrEqual(timeoutMs - 50);
    expect(Number(e.waitedMs)).toBeLessThan(timeoutMs + 5000);
    // a 10 ms interval kept ticking while the collective waited
    expect(Number(e.ticks)).toBeGreaterThan(20);
    r.launched.kill('SIGKILL');
    await r.done;
    expect(await waitUntil(() => shmLeftovers(r.launched.group).length === 0, 1000)).toBe(true);
  });
});

describe('launcher cleanup', () => {
  it('removes the segment of a group whose members all died while joining', async () => {
    const r = run({
      ranks: 2,
      env: { MPO_TEST_SCENARIO: 'join-only', MPO_TEST_TIMEOUT_MS: '60000' },
      command: 'sh',
      args: ['-c', `[ "$RANK" = 1 ] && kill -9 $$; exec "${process.execPath}" "$0"`, rankScript],
    });
    // rank 0 creates the segment and waits for rank 1, which is gone
    expect(await waitUntil(() => shmLeftovers(r.launched.group).length === 1, 20_000)).toBe(true);
    process.kill(r.launched.ranks[0]?.pid as number, 'SIGKILL');
    await r.done;
    expect(shmLeftovers(r.launched.group)).toEqual([]);
  });
});
