// ASHA rung results in Redis, shared by every agent running trials of one run.
// A trial reaching rung k records its metric once (atomically, with an arrival
// number) and gets back everything recorded at that rung; ashaDecision then
// compares it only with results that arrived before it, so a trial resumed
// after a crash that re-records gets the same decision as the first time.
import type { Redis } from 'ioredis';
import { type AshaDecision, ashaDecision, type RungResult } from './asha.js';
import { redisKeys } from './names.js';

export const RUNG_TTL_SECONDS = 60 * 24 * 3600;
const ORDER_FIELD = '__order';

// KEYS[1] rung hash; ARGV: trialId, value, ttl. Returns HGETALL after recording.
const RECORD_SCRIPT = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  local order = redis.call('HINCRBY', KEYS[1], '${ORDER_FIELD}', 1)
  redis.call('HSET', KEYS[1], ARGV[1], order .. '|' .. ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return redis.call('HGETALL', KEYS[1])`;

/** Records `value` for the trial at rung index `rung` (first write wins) and returns all results there. */
export async function recordRungResult(
  redis: Redis,
  prefix: string,
  runId: string,
  rung: number,
  trialId: string,
  value: number,
): Promise<RungResult[]> {
  const flat = (await redis.eval(
    RECORD_SCRIPT,
    1,
    redisKeys(prefix).ashaRung(runId, rung),
    trialId,
    // String(NaN) is "NaN", which Number() reads back as NaN.
    String(value),
    String(RUNG_TTL_SECONDS),
  )) as string[];
  const results: RungResult[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const field = flat[i]!;
    if (field === ORDER_FIELD) continue;
    const raw = flat[i + 1]!;
    const bar = raw.indexOf('|');
    results.push({ trialId: field, order: Number(raw.slice(0, bar)), value: Number(raw.slice(bar + 1)) });
  }
  return results.sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
}

/** Records the trial's rung metric and decides whether it continues (the worker's one call per rung). */
export async function decideAtRung(
  redis: Redis,
  prefix: string,
  args: {
    runId: string;
    trialId: string;
    rung: number;
    step: number;
    value: number;
    mode: 'min' | 'max';
    reductionFactor: number;
    metric: string;
  },
): Promise<AshaDecision> {
  const results = await recordRungResult(redis, prefix, args.runId, args.rung, args.trialId, args.value);
  return ashaDecision(results, args.trialId, args);
}
