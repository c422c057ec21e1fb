// Trials that span hosts (issue 15 item 3; README "Trials that span hosts"). The reservation protocol
// is @mpo/queue's gang.ts; this file is the agent's side of it:
//
// - formGang: the agent that took the train job (host rank 0, whose rank 0 serves the c10d TCPStore
//   and owns checkpoints and metrics) opens a gang and waits until the other hosts' seats are taken,
//   then starts it; at the deadline it cancels it instead (every seat holder releases its slots).
// - GangSeat: an agent on another host with free slots took a seat; it waits for the start, launches
//   its ranks with their global ranks, and stops them when the gang is cancelled or a host dies.
// - watchGang: every seat holder renews its liveness key and checks the others' (deadSeats).
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  beatSeat,
  cancelGang,
  deadSeats,
  type Gang,
  gangHostEnv,
  olderOpenGang,
  openGang,
  readGang,
  startGang,
  withdrawGang,
} from '@mpo/queue';
import type { Redis } from 'ioredis';
import { type ChildHandle, startChild } from './child.js';
import type { AgentConfig } from './config.js';
import type { SlotLease } from './devices.js';
import type { Logger } from './log.js';
import { AbortedError } from './retry.js';

/** How often a seat holder polls the gang's state while waiting. */
export const GANG_POLL_MS = 200;
/** A job whose gang gave way to an older one comes back after this long (its agent joins the older meanwhile). */
export const GANG_YIELD_DELAY_MS = 2_000;

/** A TCP port free on this host now (the TCPStore binds it a moment later; see README). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, () => resolve());
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

export type GangFormed =
  | { kind: 'started'; gang: Gang }
  | { kind: 'expired' }
  /** An older open gang this agent could join: ours was cancelled so that the agent joins that one. */
  | { kind: 'yielded'; to: string };

/**
 * Opens gang `<jobId>-<random>` for a trial of `hosts` x `ranksPerHost` ranks and waits for it to fill.
 * Returns the started gang; or 'expired' when the deadline passed first, or 'yielded' when an older open
 * gang wants this host (olderOpenGang): the gang is then cancelled, so no seat holder ever launches.
 * Aborting `signal` cancels the gang too.
 */
export async function formGang(
  ctx: { cfg: AgentConfig; redis: Redis; log: Logger },
  spec: { jobId: string; hosts: number; ranksPerHost: number; device: string; config: string },
  signal: AbortSignal,
): Promise<GangFormed> {
  const { cfg, redis, log } = ctx;
  const id = `${spec.jobId}-${randomUUID().slice(0, 8)}`;
  const store = `${cfg.hostAddr}:${await freePort()}`;
  await openGang(
    redis,
    cfg.prefix,
    id,
    {
      hosts: spec.hosts,
      ranksPerHost: spec.ranksPerHost,
      store,
      reservationMs: cfg.gangReservationMs,
      device: spec.device,
      config: spec.config,
    },
    { agentId: cfg.id, hostId: cfg.hostId },
  );
  log.info({ gang: id, hosts: spec.hosts, ranksPerHost: spec.ranksPerHost, store }, 'gang opened');
  try {
    for (;;) {
      await beatSeat(redis, cfg.prefix, id, 0, cfg.gangLivenessMs);
      const g = await readGang(redis, cfg.prefix, id);
      if (!g || g.state === 'cancelled') return { kind: 'expired' };
      if (g.state === 'full') {
        if ((await startGang(redis, cfg.prefix, id)) !== 'started') return { kind: 'expired' };
        log.info({ gang: id, seats: g.seats }, 'gang full: starting');
        return { kind: 'started', gang: { ...g, state: 'started' } };
      }
      if (Date.now() > g.deadline) {
        await cancelGang(redis, cfg.prefix, id);
        log.warn({ gang: id, seats: g.seats.length, hosts: g.hosts }, 'gang did not fill by its deadline');
        return { kind: 'expired' };
      }
      const older = await olderOpenGang(redis, cfg.prefix, g, cfg.hostId);
      // Withdrawing fails (the gang is 'full') when its last seat was taken meanwhile: then start ours.
      if (older && (await withdrawGang(redis, cfg.prefix, id)) === 'cancelled') {
        log.info({ gang: id, to: older.id }, 'an older gang needs this host: giving way');
        return { kind: 'yielded', to: older.id };
      }
      await sleep(GANG_POLL_MS, undefined, { signal });
    }
  } catch (err) {
    await cancelGang(redis, cfg.prefix, id).catch(() => {});
    throw signal.aborted ? new AbortedError('gang reservation') : err;
  }
}

/**
 * Renews this seat's liveness every livenessMs/3 and calls `onLost` once when the gang is cancelled
 * or another seat's liveness expired. Returns a function that stops watching.
 */
export function watchGang(
  redis: Redis,
  cfg: AgentConfig,
  gang: Gang,
  hostRank: number,
  onLost: (reason: string) => void,
): () => void {
  let lost = false;
  let busy = false;
  const tick = async () => {
    if (busy || lost) return;
    busy = true;
    try {
      await beatSeat(redis, cfg.prefix, gang.id, hostRank, cfg.gangLivenessMs);
      const [g, dead] = await Promise.all([
        readGang(redis, cfg.prefix, gang.id),
        deadSeats(redis, cfg.prefix, gang.id, gang.hosts),
      ]);
      const reason =
        !g || g.state === 'cancelled'
          ? 'gang cancelled'
          : dead.some((r) => r !== hostRank)
            ? `host rank(s) ${dead.filter((r) => r !== hostRank).join(',')} stopped renewing their liveness`
            : null;
      if (reason && !lost) {
        lost = true;
        onLost(reason);
      }
    } catch {
      // Redis away: the c10d timeout still bounds how long a dead peer can hold the ranks.
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), Math.max(50, cfg.gangLivenessMs / 3));
  void tick();
  return () => clearInterval(timer);
}

/** Launches this host's share of a started gang's ranks (`mpo train` on the gang's config). */
export function launchGangRanks(
  cfg: AgentConfig,
  gang: Gang,
  hostRank: number,
  lease: SlotLease,
  log: Logger,
  protocolFile?: string,
): ChildHandle {
  const { rankOffset, worldSize, env } = gangHostEnv(gang, hostRank);
  return startChild({
    command: [...cfg.cli, 'train', '--config', gang.config, '--json'],
    ranks: gang.ranksPerHost,
    lease,
    log,
    rankOffset,
    worldSize,
    env: { ...env, MPO_C10D_TIMEOUT_MS: String(cfg.c10dTimeoutMs) },
    ...(protocolFile ? { protocolFile } : {}),
  });
}

/**
 * A seat this agent took in another agent's gang: wait for the start (or the cancel), run this host's
 * ranks, stop them when the gang is lost. Resolves when the ranks have exited or the seat was given up;
 * the caller then releases the slots.
 */
export class GangSeat {
  private child: ChildHandle | null = null;
  private stopped = false;

  constructor(
    private readonly ctx: { cfg: AgentConfig; redis: Redis; log: Logger },
    readonly gangId: string,
    readonly hostRank: number,
    private readonly lease: SlotLease,
  ) {}

  /** Agent shutdown: SIGTERM the ranks (SIGKILL after the grace), or give the seat up if not started. */
  stop(): void {
    this.stopped = true;
    const child = this.child;
    if (!child) return;
    child.signal('SIGTERM');
    setTimeout(() => child.signal('SIGKILL'), this.ctx.cfg.stopGraceMs).unref();
  }

  async run(): Promise<void> {
    const { cfg, redis, log } = this.ctx;
    const gang = await this.waitForStart();
    if (!gang) return;
    this.child = launchGangRanks(cfg, gang, this.hostRank, this.lease, log);
    log.info({ gang: gang.id, hostRank: this.hostRank, pids: this.child.pids }, 'gang ranks launched');
    // Shutdown came as the gang started: the others launched, so launch too and stop gracefully (the
    // stop flag is all-reduced) rather than leave them waiting for the c10d timeout.
    if (this.stopped) this.stop();
    const unwatch = watchGang(redis, cfg, gang, this.hostRank, (reason) => {
      log.warn({ gang: gang.id, reason }, 'gang lost: killing this host’s ranks');
      this.child?.signal('SIGKILL');
    });
    try {
      const exit = await this.child.exited;
      log.info(
        {
          gang: gang.id,
          exitCode: exit.exitCode,
          ...(exit.exitCode ? { stderr: this.child.stderrTail().slice(-5) } : {}),
        },
        'gang ranks exited',
      );
    } finally {
      unwatch();
    }
  }

  /** The started gang, or null when it was cancelled or never started (the coordinator died). */
  private async waitForStart(): Promise<Gang | null> {
    const { cfg, redis, log } = this.ctx;
    for (;;) {
      await beatSeat(redis, cfg.prefix, this.gangId, this.hostRank, cfg.gangLivenessMs);
      const g = await readGang(redis, cfg.prefix, this.gangId);
      if (g?.state === 'started') return g;
      const given =
        !g || g.state === 'cancelled'
          ? 'gang cancelled'
          : this.stopped
            ? 'agent shutting down'
            : Date.now() > g.deadline + cfg.gangLivenessMs
              ? 'gang never started'
              : null;
      if (given) {
        // Shutting down or stuck before the start: nobody may launch a gang missing this host.
        if (g && g.state !== 'cancelled') await cancelGang(redis, cfg.prefix, this.gangId);
        log.info({ gang: this.gangId, reason: given }, 'gang seat given up; releasing its slots');
        return null;
      }
      await sleep(GANG_POLL_MS);
    }
  }
}
