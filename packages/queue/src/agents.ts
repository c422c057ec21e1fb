// Worker agents advertise themselves with a heartbeat: every
// AGENT_HEARTBEAT_MS they write the hash `<prefix>:agents:<agentId>` (TTL
// AGENT_TTL_SECONDS, so a killed agent disappears by itself) and bump their
// score in the index `<prefix>:agents` (sorted set, agentId → last beat in
// ms). The API's GET /queues lists them with their device slots.
//
// Hash fields (all strings): id, host, pid, startedAt (ms), lastSeen (ms),
// version, queues (JSON string[]), slots (JSON AgentSlots[]), running (JSON
// RunningJob[]).
import type { Redis } from 'ioredis';
import type { SlotRequirement } from './jobs.js';
import { redisKeys } from './names.js';
import type { Device } from './spec.js';

export const AGENT_HEARTBEAT_MS = 5_000;
export const AGENT_TTL_SECONDS = 15;

/** One device kind on an agent: `total` slots, `free` of them idle; `ids` names them (GPU indices, cores). */
export interface AgentSlots {
  device: Device;
  total: number;
  free: number;
  ids?: string[];
}

export interface RunningJob {
  queue: string;
  jobId: string;
  runId: string;
  trialId: string;
  slots: SlotRequirement;
  /** Slot ids the job holds (e.g. GPU indices). */
  assigned?: string[];
  startedAt: number;
}

export interface AgentHeartbeat {
  id: string;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  lastSeen: number;
  queues: string[];
  slots: AgentSlots[];
  running: RunningJob[];
}

/** Writes (or refreshes) an agent's heartbeat atomically. */
export async function writeHeartbeat(
  redis: Redis,
  prefix: string,
  hb: AgentHeartbeat,
  ttlSeconds = AGENT_TTL_SECONDS,
): Promise<void> {
  const keys = redisKeys(prefix);
  await redis
    .multi()
    .hset(keys.agent(hb.id), {
      id: hb.id,
      host: hb.host,
      pid: String(hb.pid),
      version: hb.version,
      startedAt: String(hb.startedAt),
      lastSeen: String(hb.lastSeen),
      queues: JSON.stringify(hb.queues),
      slots: JSON.stringify(hb.slots),
      running: JSON.stringify(hb.running),
    })
    .expire(keys.agent(hb.id), ttlSeconds)
    .zadd(keys.agents, hb.lastSeen, hb.id)
    .exec();
}

/** Removes an agent's heartbeat (graceful shutdown). */
export async function removeHeartbeat(redis: Redis, prefix: string, agentId: string): Promise<void> {
  const keys = redisKeys(prefix);
  await redis.multi().del(keys.agent(agentId)).zrem(keys.agents, agentId).exec();
}

/** Agents whose heartbeat has not expired, most recent first; prunes the index of expired ones. */
export async function readAgents(redis: Redis, prefix: string): Promise<AgentHeartbeat[]> {
  const keys = redisKeys(prefix);
  const ids = await redis.zrevrange(keys.agents, 0, 999);
  if (ids.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.hgetall(keys.agent(id));
  const replies = (await pipeline.exec()) ?? [];
  const agents: AgentHeartbeat[] = [];
  const gone: string[] = [];
  replies.forEach(([err, h], i) => {
    const hash = h as Record<string, string> | null;
    if (err || !hash || !hash.id) {
      gone.push(ids[i]!);
      return;
    }
    agents.push({
      id: hash.id,
      host: hash.host ?? '',
      pid: Number(hash.pid),
      version: hash.version ?? '',
      startedAt: Number(hash.startedAt),
      lastSeen: Number(hash.lastSeen),
      queues: safeJson(hash.queues, []),
      slots: safeJson(hash.slots, []),
      running: safeJson(hash.running, []),
    });
  });
  if (gone.length) await redis.zrem(keys.agents, ...gone);
  return agents;
}

function safeJson<T>(s: string | undefined, fallback: T): T {
  if (!s) return fallback;
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
}

/**
 * Whether a job's slot requirement fits an agent: 'now' (enough free slots),
 * 'later' (enough slots in total, some busy) or 'never' (the agent lacks the
 * device or has fewer slots than the job's ranks; leave the job to others).
 */
export function fits(req: SlotRequirement, slots: readonly AgentSlots[]): 'now' | 'later' | 'never' {
  const s = slots.find((x) => x.device === req.device);
  const count = localSlots(req).count;
  if (!s || s.total < count) return 'never';
  return s.free >= count ? 'now' : 'later';
}

/** The slots one agent provides for a job: all of them, or one host's share of a gang (jobs.ts). */
export function localSlots(req: SlotRequirement): { device: SlotRequirement['device']; count: number } {
  return { device: req.device, count: hostsOf(req) > 1 ? req.ranksPerHost! : req.count };
}

/** How many hosts a job spans (1 unless its slots ask for ranksPerHost below count). */
export function hostsOf(req: SlotRequirement): number {
  return req.ranksPerHost !== undefined && req.ranksPerHost < req.count
    ? Math.ceil(req.count / req.ranksPerHost)
    : 1;
}
