// Counters in Redis, shared by every rate-limit service replica. One Lua script
// per request reads every counter the request touches, decides, and counts all or
// none: Redis runs a script to completion before any other command, so there is
// no read-then-write race between replicas or between a request's descriptors.
//
// The script is window.ts's rules in Lua (a property test holds the two to the
// same answers). Each counter is a hash: field = bucket index, value = count.
//
// Redis Cluster: a script may touch only the keys it is given, and all of them
// must hash to one slot. Every key this service builds carries the hash tag
// `{rl:<domain>}` (descriptors.ts), so one request's counters always share a slot
// and the script runs unchanged on a cluster. The price: all counters of one
// domain live on one shard; spread load across shards with several domains.
// The script reads the clock with TIME when the caller passes none: allowed in
// scripts since Redis 5's effect replication (the only mode from Redis 7), and it
// means every replica of the service counts on the one clock Redis keeps.
import type { CounterStore } from './store.ts';
import type { CounterSpec, CounterVerdict, Decision } from './window.ts';
import { bucketMs } from './window.ts';

/** Runs the counting script: the one thing the store needs from a Redis client. */
export interface ScriptRunner {
  run(keys: readonly string[], args: readonly string[]): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * ARGV[1]: now in ms, or '' to use Redis' clock. Then per counter i (KEYS[i]), five
 * values: 'f' | 's' (fixed | sliding), capacity, window ms, bucket ms, hits.
 * Returns { admitted (0 | 1), then per counter: over, used, retry-after ms, reset ms }.
 */
export const COUNTING_SCRIPT = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local n = #KEYS
local c = {}
local admitted = 1
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local s = { fixed = ARGV[a] == 'f', cap = tonumber(ARGV[a + 1]), win = tonumber(ARGV[a + 2]),
              g = tonumber(ARGV[a + 3]), hits = tonumber(ARGV[a + 4]) }
  s.newest = math.floor(now / s.g)
  if s.fixed then s.oldest = s.newest else s.oldest = math.floor((now - s.win + 1) / s.g) end
  local flat = redis.call('HGETALL', KEYS[i])
  local counted, stale, used = {}, {}, 0
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b < s.oldest then
      stale[#stale + 1] = flat[j]
    else
      local count = tonumber(flat[j + 1])
      counted[#counted + 1] = { b, count }
      used = used + count
    end
  end
  table.sort(counted, function(x, y) return x[1] < y[1] end)
  s.counted, s.stale, s.used = counted, stale, used
  s.over = used + s.hits > s.cap
  s.retry, s.reset = 0, 0
  if s.fixed then
    s.reset = (s.newest + 1) * s.win - now
    if s.over then s.retry = s.reset end
  else
    if #counted > 0 then s.reset = math.max(0, (counted[1][1] + 1) * s.g + s.win - 1 - now) end
    if s.over then
      s.retry = s.win
      if s.hits <= s.cap then
        local need, freed = used + s.hits - s.cap, 0
        for k = 1, #counted do
          freed = freed + counted[k][2]
          if freed >= need then
            s.retry = math.max(1, (counted[k][1] + 1) * s.g + s.win - 1 - now)
            break
          end
        end
      end
    end
  end
  if s.over then admitted = 0 end
  c[i] = s
end
local out = { admitted }
for i = 1, n do
  local s = c[i]
  if admitted == 1 then
    if #s.stale > 0 then redis.call('HDEL', KEYS[i], unpack(s.stale)) end
    redis.call('HINCRBY', KEYS[i], string.format('%d', s.newest), s.hits)
    redis.call('PEXPIRE', KEYS[i], s.win + s.g)
    if s.used == 0 and not s.fixed then s.reset = (s.newest + 1) * s.g + s.win - 1 - now end
    s.used = s.used + s.hits
    s.over = false
  end
  out[#out + 1] = s.over and 1 or 0
  out[#out + 1] = s.used
  out[#out + 1] = s.retry
  out[#out + 1] = s.reset
end
return out
`;

export interface RedisCounterStoreOptions {
  /** A fixed clock (tests walk through windows with it); default: Redis' own clock. */
  clock?: () => number;
}

export class RedisCounterStore implements CounterStore {
  constructor(
    private readonly runner: ScriptRunner,
    private readonly options: RedisCounterStoreOptions = {},
  ) {}

  async decide(specs: readonly CounterSpec[]): Promise<Decision> {
    if (specs.length === 0) return { admitted: true, verdicts: [] };
    const args = [this.options.clock ? String(Math.floor(this.options.clock())) : ''];
    for (const spec of specs) {
      args.push(
        spec.algorithm === 'fixed_window' ? 'f' : 's',
        String(spec.capacity),
        String(spec.windowMs),
        String(bucketMs(spec.algorithm, spec.windowMs)),
        String(spec.hits),
      );
    }
    return parseReply(await this.runner.run(specs.map((spec) => spec.key), args), specs.length);
  }

  close(): Promise<void> {
    return this.runner.close();
  }
}

/** The script's flat integer array as a Decision; anything else is a store error. */
export function parseReply(reply: unknown, counters: number): Decision {
  if (!Array.isArray(reply) || reply.length !== 1 + counters * 4 || !reply.every((v) => typeof v === 'number')) {
    throw new Error(`unexpected reply from the counting script: ${JSON.stringify(reply)}`);
  }
  const numbers = reply as number[];
  const verdicts: CounterVerdict[] = [];
  for (let i = 0; i < counters; i += 1) {
    const at = 1 + i * 4;
    verdicts.push({ over: numbers[at] === 1, used: numbers[at + 1]!, retryAfterMs: numbers[at + 2]!, resetMs: numbers[at + 3]! });
  }
  return { admitted: numbers[0] === 1, verdicts };
}
