import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type LaunchedRanks, type LaunchOptions, launchRanks } from '../src/index.js';

export const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const rankScript = join(fixtures, 'rank.mjs');

export type Json = Record<string, unknown>;

export interface Run {
  launched: LaunchedRanks;
  /** JSON lines per rank, in arrival order. */
  lines: Json[][];
  stderr: string[];
  /** Resolves with the first line of `rank` matching `pred`. */
  waitFor(rank: number, pred: (j: Json) => boolean, timeoutMs?: number): Promise<Json>;
  done: Promise<{ exitCode: number; lines: Json[][]; stderr: string }>;
}

export function run(opts: Partial<LaunchOptions> & { ranks: number; env?: NodeJS.ProcessEnv }): Run {
  const launched = launchRanks({
    command: process.execPath,
    args: [rankScript],
    stdio: 'pipe',
    killGraceMs: 20_000,
    ...opts,
  });
  const lines: Json[][] = launched.ranks.map(() => []);
  const stderr: string[] = [];
  const waiters: { rank: number; pred: (j: Json) => boolean; res: (j: Json) => void }[] = [];
  const closed: Promise<void>[] = [];
  for (const r of launched.ranks) {
    r.child.stderr?.on('data', (d: Buffer) => stderr.push(`[rank ${r.rank}] ${d}`));
    if (!r.child.stdout) continue;
    const rl = createInterface({ input: r.child.stdout });
    closed.push(new Promise((res) => rl.on('close', () => res())));
    rl.on('line', (line) => {
      let j: Json;
      try {
        j = JSON.parse(line) as Json;
      } catch {
        stderr.push(`[rank ${r.rank} stdout] ${line}\n`);
        return;
      }
      (lines[r.rank] as Json[]).push(j);
      for (const w of [...waiters]) {
        if (w.rank === r.rank && w.pred(j)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.res(j);
        }
      }
    });
  }
  const waitFor = (rank: number, pred: (j: Json) => boolean, timeoutMs = 30_000) =>
    new Promise<Json>((res, rej) => {
      const hit = (lines[rank] ?? []).find(pred);
      if (hit) return res(hit);
      const t = setTimeout(
        () =>
          rej(new Error(`rank ${rank}: no matching line in ${timeoutMs} ms; stderr:\n${stderr.join('')}`)),
        timeoutMs,
      );
      waiters.push({
        rank,
        pred,
        res: (j) => {
          clearTimeout(t);
          res(j);
        },
      });
    });
  const done = launched.exited.then(async (r) => {
    await Promise.all(closed);
    return { exitCode: r.exitCode, lines, stderr: stderr.join('') };
  });
  return { launched, lines, stderr, waitFor, done };
}

/** Alive and not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export async function waitUntil(pred: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return pred();
}

/** Entries under /dev/shm that belong to `group`. */
export function shmLeftovers(group: string): string[] {
  return readdirSync('/dev/shm').filter((f) => f.includes(`mpo-ar-${group}`));
}

/** Cpus_allowed_list of every thread of `pid`. */
export function threadCpus(pid: number): string[] {
  const dir = `/proc/${pid}/task`;
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((tid) => {
    try {
      return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`${dir}/${tid}/status`, 'utf8'))?.[1] ?? '?';
    } catch {
      return 'gone';
    }
  });
}
