// One trainer per trial folder. BullMQ already gives a job to one agent at a
// time, but an agent cut off from Redis for longer than the lock keeps its
// child training while the job is handed to another agent; two trainers
// writing one checkpoint folder would corrupt it. So the agent that runs a
// trial also holds <trialDir>/.agent-lock, and another agent takes the
// folder only when that owner is gone: its pid is dead or belongs to a later
// process (same host: a restarted container has the same host name and pid),
// or its heartbeat has expired (another host).
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileWhole } from '@mpo/util';

export interface LockOwner {
  agentId: string;
  host: string;
  pid: number;
  /** Random per process start: a restarted container reuses host name and pid (often 1), never this. */
  instance?: string;
  jobId: string;
  token: string;
  at: number;
}

export type LockResult = { ok: true; release: () => void } | { ok: false; owner: LockOwner };

export const LOCK_FILE = '.agent-lock';

/** This process's start: tells a lock we hold from one left by an earlier process with our pid. */
export const PROCESS_INSTANCE = randomUUID();

/** Whether the holder of a lock on this host still runs. */
export function holderAlive(held: LockOwner): boolean {
  if (held.pid === process.pid) return held.instance === PROCESS_INSTANCE;
  return pidAlive(held.pid);
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
  } catch {
    return null;
  }
}

export async function acquireTrialLock(
  trialDir: string,
  me: Omit<LockOwner, 'token' | 'at'>,
  agentAlive: (agentId: string) => Promise<boolean>,
): Promise<LockResult> {
  mkdirSync(trialDir, { recursive: true });
  const path = join(trialDir, LOCK_FILE);
  const owner: LockOwner = { ...me, instance: PROCESS_INSTANCE, token: randomUUID(), at: Date.now() };
  const body = JSON.stringify(owner);
  const release = () => {
    if (readOwner(path)?.token === owner.token) {
      try {
        unlinkSync(path);
      } catch {}
    }
  };
  try {
    writeFileSync(path, body, { flag: 'wx' });
    return { ok: true, release };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const held = readOwner(path);
  if (held) {
    const alive =
      held.host === me.host ? holderAlive(held) : await agentAlive(held.agentId).catch(() => true);
    if (alive) return { ok: false, owner: held };
  }
  // The owner is gone (or the file is unreadable): take the folder over atomically.
  writeFileWhole(path, body, owner.token);
  if (readOwner(path)?.token !== owner.token) return { ok: false, owner: readOwner(path) ?? owner };
  return { ok: true, release };
}
