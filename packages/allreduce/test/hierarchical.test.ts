// Trials across hosts (issue 15 item 2): libtorch's c10d gloo group between hosts' leaders, the
// shared-memory group inside each host (src/hierarchical.ts). "Hosts" here are separate process groups
// on this machine with their own shared-memory group each, talking gloo over loopback, as two machines
// would over the network.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { c10dBackends } from '../src/index.js';
import { fixtures } from './helpers.js';

type Line = Record<string, unknown>;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Starts hosts x perHost rank processes; resolves the JSON lines of each rank when all exit. */
async function startTrial(hosts: number, perHost: number, extra: NodeJS.ProcessEnv = {}) {
  const port = await freePort();
  const id = randomUUID().slice(0, 8);
  const world = hosts * perHost;
  const ranks = Array.from({ length: world }, (_, rank) => {
    const host = Math.floor(rank / perHost);
    const child = spawn(process.execPath, [`${fixtures}/hier-rank.mjs`], {
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(world),
        MPO_HOST_RANK: String(host),
        MPO_HOSTS: String(hosts),
        LOCAL_RANK: String(rank % perHost),
        LOCAL_WORLD_SIZE: String(perHost),
        MPO_GROUP: `hier-${id}-h${host}`,
        MPO_C10D_STORE: `127.0.0.1:${port}`,
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const lines: Line[] = [];
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Line));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { rank, host, child, lines, exited, stderr: () => stderr };
  });
  return ranks;
}

/** The float buffer each rank starts from (hier-rank.mjs's xorshift), summed in float64. */
function floatReference(world: number, n: number): number[] {
  const out = new Array<number>(n).fill(0);
  for (let rank = 0; rank < world; rank++) {
    let s = rank + 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      out[i]! += Math.fround(s / 4294967296 - 0.5);
    }
  }
  return out;
}

describe.skipIf(!c10dBackends().includes('gloo'))(
  'all-reduce across hosts: shm inside, c10d gloo between',
  () => {
    for (const [hosts, perHost] of [
      [2, 1],
      [2, 2],
      [3, 1],
    ] as const) {
      it(`${hosts} hosts x ${perHost} ranks: every rank gets the same sum, exact where it can be`, async () => {
        const n = 1000;
        const ranks = await startTrial(hosts, perHost, { N: String(n) });
        const codes = await Promise.all(ranks.map((r) => r.exited));
        expect(codes, ranks.map((r) => r.stderr()).join('\n')).toEqual(ranks.map(() => 0));
        const world = hosts * perHost;
        const tri = (world * (world + 1)) / 2;
        const ref = floatReference(world, n);
        const hashes = new Set<string>();
        for (const r of ranks) {
          const out = r.lines[0]!;
          expect(out.exact).toEqual(Array.from({ length: 14 }, (_, i) => ((i % 7) + 0.25) * tri));
          const got = out.float as number[];
          for (let i = 0; i < n; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(1e-6 * world);
          hashes.add(out.hash as string);
        }
        // Identical bits everywhere: the data-parallel replicas cannot drift apart.
        expect(hashes.size).toBe(1);
      });
    }

    it('a killed host fails the surviving leader at once, not after the c10d timeout', async () => {
      const ranks = await startTrial(2, 1, { N: '100000', HANG_AFTER: '1', MPO_C10D_TIMEOUT_MS: '30000' });
      const waiting = async (r: (typeof ranks)[number]) => {
        for (let i = 0; i < 600 && !r.lines.some((l) => l.waiting); i++)
          await new Promise((res) => setTimeout(res, 50));
      };
      await Promise.all(ranks.map(waiting));
      const t0 = Date.now();
      ranks[1]!.child.kill('SIGKILL');
      const code = await ranks[0]!.exited;
      const elapsed = Date.now() - t0;
      expect(code, ranks[0]!.stderr()).toBe(3);
      const err = ranks[0]!.lines.find((l) => l.error)!;
      expect(String(err.error)).toMatch(/c10d gloo all-reduce failed/);
      // Gloo sees the peer's connection close; the 30 s timeout would only catch a host that hangs.
      expect(elapsed).toBeLessThan(10_000);
      expect(err.afterMs as number).toBeLessThan(10_000);
    });
  },
);
