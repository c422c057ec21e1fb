// Starts a job's child through the rank launcher (packages/allreduce): K rank
// processes pinned to the job's cores (or one GPU each), started through the
// launcher's exec wrapper so they die with the agent (PR_SET_PDEATHSIG). A
// SIGKILLed agent therefore never leaves a trainer running that would race
// the agent resuming the trial. One rank goes through the same path.
import { createInterface } from 'node:readline';
import { type LaunchResult, launchRanks } from '@mpo/allreduce';
import type { SlotLease } from './devices.js';
import type { Logger } from './log.js';

/** Rank 0's stdout goes to $MPO_PROTOCOL_FILE (appending); other ranks print nothing on stdout anyway. */
const TO_PROTOCOL_FILE =
  'if [ "$RANK" = 0 ]; then exec "$@" >>"$MPO_PROTOCOL_FILE"; else exec "$@" >/dev/null; fi';

/**
 * What a trainer or evaluator must not inherit from the agent: database and
 * queue credentials (children write to files, never to Postgres or Redis) and
 * the bootstrap admin token. Judge credentials only go to children that judge.
 */
export const AGENT_ONLY_ENV = ['DATABASE_URL', 'REDIS_URL', 'MPO_ADMIN_TOKEN', 'MPO_METRICS_TOKEN'] as const;
export const JUDGE_ENV = /^MPO_JUDGE_/;

/** The environment overrides that remove what a child must not see (undefined: not passed at all). */
export function withheldEnv(parent: NodeJS.ProcessEnv, opts: { judge: boolean }): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of AGENT_ONLY_ENV) out[k] = undefined;
  if (!opts.judge) for (const k of Object.keys(parent)) if (JUDGE_ENV.test(k)) out[k] = undefined;
  return out;
}

export interface ChildOptions {
  /** The CLI prefix (e.g. [node, apps/cli/bin/mpo.js]) and the command's arguments. */
  command: string[];
  ranks: number;
  /** A trial spanning hosts: this host's first global rank and the trial's world size (launch.ts). */
  rankOffset?: number;
  worldSize?: number;
  lease: SlotLease;
  log: Logger;
  /** When set, rank 0's stdout is appended to this file; otherwise `onStdoutLine` gets it. */
  protocolFile?: string;
  onStdoutLine?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The child calls the LLM judge: it gets the MPO_JUDGE_* variables (default: withheld). */
  judge?: boolean;
}

export interface ChildHandle {
  pids: number[];
  /** Resolves when every rank has exited. */
  exited: Promise<LaunchResult>;
  signal(sig: NodeJS.Signals): void;
  /** The last lines the ranks wrote on stderr (for error messages). */
  stderrTail(): string[];
}

const STDERR_TAIL = 40;
const PROGRESS_LINE = '{"type":"progress"';

export function startChild(opts: ChildOptions): ChildHandle {
  const [file, ...args] = opts.command;
  if (!file) throw new Error('empty child command');
  const viaFile = opts.protocolFile !== undefined;
  const launched = launchRanks({
    ranks: opts.ranks,
    ...(opts.rankOffset !== undefined ? { rankOffset: opts.rankOffset } : {}),
    ...(opts.worldSize !== undefined ? { worldSize: opts.worldSize } : {}),
    command: viaFile ? '/bin/sh' : file,
    args: viaFile ? ['-c', TO_PROTOCOL_FILE, 'mpo-rank', file, ...args] : args,
    devices:
      opts.lease.device === 'cpu'
        ? {
            kind: 'cpu',
            cores: opts.lease.ids,
            coresPerRank: Math.max(1, Math.floor(opts.lease.ids.length / opts.ranks)),
          }
        : { kind: 'gpu', ids: opts.lease.ids },
    env: {
      ...withheldEnv(process.env, { judge: opts.judge === true }),
      ...opts.env,
      ...(viaFile ? { MPO_PROTOCOL_FILE: opts.protocolFile } : {}),
    },
    stdio: 'pipe',
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const tail: string[] = [];
  // Lines still buffered in rank 0's stdout pipe when the process exits must not be lost.
  let stdoutClosed: Promise<void> = Promise.resolve();
  for (const r of launched.ranks) {
    const err = r.child.stderr;
    if (err) {
      createInterface({ input: err, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        // The CLI's progress lines (apps/cli/src/progress.ts) would crowd the error message.
        if (line.startsWith(PROGRESS_LINE)) return;
        tail.push(r.rank === 0 ? line : `[rank ${r.rank}] ${line}`);
        if (tail.length > STDERR_TAIL) tail.shift();
        opts.log.debug({ rank: r.rank, stderr: line }, 'child stderr');
      });
    }
    const out = r.child.stdout;
    if (out) {
      if (r.rank === 0 && opts.onStdoutLine) {
        const rl = createInterface({ input: out, crlfDelay: Number.POSITIVE_INFINITY });
        rl.on('line', opts.onStdoutLine);
        stdoutClosed = new Promise((resolve) => rl.once('close', () => resolve()));
      } else out.resume();
    }
  }
  return {
    pids: launched.ranks.map((r) => r.pid),
    exited: Promise.all([launched.exited, stdoutClosed]).then(([r]) => r),
    signal: (sig) => launched.kill(sig),
    stderrTail: () => [...tail],
  };
}
