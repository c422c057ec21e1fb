// Gang reservation of one trial's hosts in Redis (issue 15 item 3, the "all ranks start or none" part),
// used by the worker agent (apps/worker/src/gang-run.ts, README "Trials that span hosts").
//
// A trial asking for `hosts` hosts of `ranksPerHost` slots each is opened by the agent that took its
// job (host 0, the coordinator, whose rank 0 owns checkpoints and metrics). Agents on other hosts with
// that many free slots take the remaining seats; each seat is taken atomically (one Lua script), at most
// one per host id, never more than `hosts`. The gang then either fills and starts — every seat holder
// launches its ranks — or, when the reservation deadline passes first, is cancelled and every holder
// releases its slots. Each is one state change done in Redis, so no agent can see "started" while
// another sees "cancelled".
//
//   open      -> full       (the last seat taken)
//   open      -> cancelled  (the coordinator gave up at the deadline, or cancelled)
//   full      -> started    (the coordinator launched)
//   full|started -> cancelled (the coordinator abandons the attempt, e.g. a rank died)
//
// Keys (prefix = the deployment's queue prefix): `<prefix>:gang:<id>` hash {hosts, ranksPerHost, store,
// deadline, state, coordinator}, `<prefix>:gang:<id>:seats` hash {hostRank -> JSON seat},
// `<prefix>:gangs:open` set of ids open for joining.
import type { Redis } from 'ioredis';

/** One definition of the gang states (see the transitions above). */
export const GANG_STATES = ['open', 'full', 'started', 'cancelled'] as const;
export type GangState = (typeof GANG_STATES)[number];

export interface GangSpec {
  /** Hosts the trial spans (>= 2) and ranks on each. */
  hosts: number;
  ranksPerHost: number;
  /** host:port of the c10d TCPStore the coordinator's leader rank serves. */
  store: string;
  /** How long seats stay reserved waiting for the others. */
  reservationMs: number;
  /** What the seat holders launch: the slots' device and the trainer config file (shared storage). */
  device?: string;
  config?: string;
}

export interface GangSeat {
  hostRank: number;
  agentId: string;
  hostId: string;
}

export interface Gang extends Omit<GangSpec, 'reservationMs' | 'device' | 'config'> {
  device: string;
  config: string;
  /** When it was opened (ms): the older of two open gangs has priority (olderOpenGang). */
  opened: number;
  id: string;
  state: GangState;
  deadline: number;
  seats: GangSeat[];
}

const TTL_SECONDS = 24 * 3600;

const keys = (prefix: string, id: string) => ({
  gang: `${prefix}:gang:${id}`,
  seats: `${prefix}:gang:${id}:seats`,
  open: `${prefix}:gangs:open`,
  alive: (hostRank: number) => `${prefix}:gang:${id}:alive:${hostRank}`,
});

// KEYS: gang, seats, open. ARGV: id, agentId, hostId, now. Returns the host rank taken, or an error
// word: missing | full | started | cancelled | expired | same-host.
const JOIN_SCRIPT = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'open' then return state end
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'deadline')) then return 'expired' end
local seats = redis.call('HVALS', KEYS[2])
for _, s in ipairs(seats) do
  if cjson.decode(s).hostId == ARGV[3] then return 'same-host' end
end
local hosts = tonumber(redis.call('HGET', KEYS[1], 'hosts'))
local rank = #seats
redis.call('HSET', KEYS[2], rank, cjson.encode({hostRank = rank, agentId = ARGV[2], hostId = ARGV[3]}))
if rank + 1 == hosts then
  redis.call('HSET', KEYS[1], 'state', 'full')
  redis.call('SREM', KEYS[3], ARGV[1])
end
return rank`;

// KEYS: gang, open. ARGV: id, from-states (comma separated), to-state. Returns the state after the call.
const TRANSITION_SCRIPT = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
for from in string.gmatch(ARGV[2], '[^,]+') do
  if state == from then
    redis.call('HSET', KEYS[1], 'state', ARGV[3])
    redis.call('SREM', KEYS[2], ARGV[1])
    return ARGV[3]
  end
end
return state`;

/** Opens a gang with the coordinator in seat 0 (host rank 0). */
export async function openGang(
  redis: Redis,
  prefix: string,
  id: string,
  spec: GangSpec,
  coordinator: { agentId: string; hostId: string },
  now = Date.now(),
): Promise<void> {
  if (!Number.isInteger(spec.hosts) || spec.hosts < 2) throw new RangeError('a gang spans at least 2 hosts');
  if (!Number.isInteger(spec.ranksPerHost) || spec.ranksPerHost < 1)
    throw new RangeError('ranksPerHost must be >= 1');
  const k = keys(prefix, id);
  const seat: GangSeat = { hostRank: 0, ...coordinator };
  // One gang per job attempt: the id names both, so it is never opened twice.
  if (await redis.exists(k.gang)) throw new Error(`gang ${id} already exists`);
  // Every field in one MULTI: a joiner never sees an open gang without its deadline.
  await redis
    .multi()
    .hset(k.gang, {
      state: 'open',
      hosts: spec.hosts,
      ranksPerHost: spec.ranksPerHost,
      store: spec.store,
      device: spec.device ?? '',
      config: spec.config ?? '',
      deadline: now + spec.reservationMs,
      opened: now,
      coordinator: coordinator.agentId,
    })
    .hset(k.seats, '0', JSON.stringify(seat))
    .sadd(k.open, id)
    .expire(k.gang, TTL_SECONDS)
    .expire(k.seats, TTL_SECONDS)
    .exec();
}

export type JoinResult = { ok: true; hostRank: number } | { ok: false; reason: string };

/** Takes the next free seat of gang `id` for an agent on `hostId` (one seat per host), atomically. */
export async function joinGang(
  redis: Redis,
  prefix: string,
  id: string,
  member: { agentId: string; hostId: string },
  now = Date.now(),
): Promise<JoinResult> {
  const k = keys(prefix, id);
  const r = await redis.eval(
    JOIN_SCRIPT,
    3,
    k.gang,
    k.seats,
    k.open,
    id,
    member.agentId,
    member.hostId,
    String(now),
  );
  return typeof r === 'number' ? { ok: true, hostRank: r } : { ok: false, reason: String(r) };
}

async function transition(redis: Redis, prefix: string, id: string, from: GangState[], to: GangState) {
  const k = keys(prefix, id);
  return (await redis.eval(TRANSITION_SCRIPT, 2, k.gang, k.open, id, from.join(','), to)) as
    | GangState
    | 'missing';
}

/** Coordinator: a full gang starts (every seat holder launches its ranks). Returns the state after. */
export const startGang = (redis: Redis, prefix: string, id: string) =>
  transition(redis, prefix, id, ['full'], 'started');

/**
 * Coordinator: gives up. From `open` (the deadline passed) every seat holder releases its slots; from
 * `full`/`started` (a rank died) every seat holder stops its ranks. Returns the state after.
 */
export const cancelGang = (redis: Redis, prefix: string, id: string) =>
  transition(redis, prefix, id, ['open', 'full', 'started'], 'cancelled');

/** Coordinator: withdraws a gang still open (nobody can have launched); 'full' etc. when too late. */
export const withdrawGang = (redis: Redis, prefix: string, id: string) =>
  transition(redis, prefix, id, ['open'], 'cancelled');

export async function readGang(redis: Redis, prefix: string, id: string): Promise<Gang | null> {
  const k = keys(prefix, id);
  const [h, seats] = await Promise.all([redis.hgetall(k.gang), redis.hvals(k.seats)]);
  if (!h.state) return null;
  return {
    id,
    state: h.state as GangState,
    hosts: Number(h.hosts),
    ranksPerHost: Number(h.ranksPerHost),
    store: h.store ?? '',
    device: h.device ?? '',
    config: h.config ?? '',
    deadline: Number(h.deadline),
    opened: Number(h.opened ?? 0),
    seats: seats.map((s) => JSON.parse(s) as GangSeat).sort((a, b) => a.hostRank - b.hostRank),
  };
}

/** Gangs waiting for seats (what an agent with free slots looks at). */
export const openGangIds = (redis: Redis, prefix: string) => redis.smembers(keys(prefix, '').open);

/**
 * The environment of one rank of a gang-scheduled trial, as @mpo/allreduce's joinHierarchicalFromEnv
 * reads it: global RANK = hostRank * ranksPerHost + localRank.
 */
export function gangRankEnv(
  gang: Gang,
  hostRank: number,
  localRank: number,
  shmGroup: string,
): Record<string, string> {
  return {
    RANK: String(hostRank * gang.ranksPerHost + localRank),
    WORLD_SIZE: String(gang.hosts * gang.ranksPerHost),
    MPO_HOSTS: String(gang.hosts),
    MPO_HOST_RANK: String(hostRank),
    LOCAL_RANK: String(localRank),
    LOCAL_WORLD_SIZE: String(gang.ranksPerHost),
    MPO_GROUP: shmGroup,
    MPO_C10D_STORE: gang.store,
  };
}

/**
 * A seat holder's liveness while the gang trains: a key that lives `ttlMs` unless renewed. The holder
 * renews it every ttlMs/3; the others read it. A holder whose agent died (SIGKILL, host lost) stops
 * renewing, and within ttlMs every other holder sees its seat dead and stops its own ranks.
 */
export async function beatSeat(
  redis: Redis,
  prefix: string,
  id: string,
  hostRank: number,
  ttlMs: number,
): Promise<void> {
  await redis.set(keys(prefix, id).alive(hostRank), String(Date.now()), 'PX', Math.max(1, Math.round(ttlMs)));
}

/** Host ranks among 0..hosts-1 whose liveness key has expired (or was never written). */
export async function deadSeats(redis: Redis, prefix: string, id: string, hosts: number): Promise<number[]> {
  const k = keys(prefix, id);
  const ranks = Array.from({ length: hosts }, (_, r) => r);
  const alive = await redis.mget(...ranks.map((r) => k.alive(r)));
  return ranks.filter((r) => alive[r] === null);
}

/** The shared part of every rank's environment on host `hostRank` (gangRankEnv less the local rank). */
export function gangHostEnv(
  gang: Gang,
  hostRank: number,
): { rankOffset: number; worldSize: number; env: Record<string, string> } {
  return {
    rankOffset: hostRank * gang.ranksPerHost,
    worldSize: gang.hosts * gang.ranksPerHost,
    env: { MPO_HOSTS: String(gang.hosts), MPO_HOST_RANK: String(hostRank), MPO_C10D_STORE: gang.store },
  };
}

/**
 * An open gang opened before `mine` (ties broken by id) that an agent on `hostId` holding `ranksPerHost`
 * slots of `device` could join instead of waiting for its own. Two agents that each open a gang and wait
 * for the other would otherwise both wait out their deadlines, again and again: the younger gang's
 * opener gives way (cancels its gang, puts its job back) and joins the older one.
 */
export async function olderOpenGang(
  redis: Redis,
  prefix: string,
  mine: Gang,
  hostId: string,
): Promise<Gang | null> {
  for (const id of await openGangIds(redis, prefix)) {
    if (id === mine.id) continue;
    const g = await readGang(redis, prefix, id);
    if (g?.state !== 'open' || g.device !== mine.device || g.ranksPerHost > mine.ranksPerHost) continue;
    if (g.seats.some((s) => s.hostId === hostId)) continue;
    if (g.opened < mine.opened || (g.opened === mine.opened && g.id < mine.id)) return g;
  }
  return null;
}
