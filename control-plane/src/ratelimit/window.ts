// Counting rules shared by every counter store. The in-memory store runs these
// functions; the Redis store's Lua script (redis-store.ts) is the same rules
// written again in Lua, and a property test holds the two to identical answers.
//
// Sliding window: a sliding log kept at sub-window resolution. Instead of one
// timestamp per admitted request (memory O(limit) per key: a 1,000,000/hour
// policy would keep a million entries per client), each counter keeps one count
// per bucket of g = floor(window / 60) ms (at most ~61 numbers per key, whatever
// the limit). A request at time `now` is checked against every bucket that
// overlaps the rolling window (now - window, now], counting the oldest,
// partly-expired bucket whole. Why this and not the alternatives:
//   - the two-window weighted counter assumes the previous window's requests were
//     spread evenly; when they all came at its end it admits up to 2x the limit in
//     a rolling window, which the "no boundary burst" guarantee forbids;
//   - GCRA / token buckets admit capacity + rate x window in a rolling window, so
//     they can only promise "never more than the limit" by forbidding bursts.
// Worst-case error, stated exactly:
//   - never over: an admission at time a sees a superset of the requests admitted
//     in (a - window, a], so no half-open interval of the window's length ever holds
//     more than `capacity` admitted requests (the last admission inside any such
//     interval saw all of them);
//   - under by at most one bucket of time: a counted request stops counting at most
//     g ms after an exact log would drop it (1 s for per-minute policies, 24 min
//     for per-day), so a refused client may wait up to g ms longer than the ideal.
//
// Fixed window: one count per calendar window (floor(now / window)). Cheap and
// exact within a window, but a client can spend the whole capacity just before a
// boundary and again just after it: up to 2 x capacity in a rolling window of the
// window's length. The tests document exactly that.
//
// Burst: a policy's `burst` is headroom above `limit.requests`; the counter's
// capacity (the most admitted in any window) is requests + burst, and the
// X-RateLimit-Limit header reports that capacity, so clients see where 429 starts.

export type CounterAlgorithm = 'sliding_window' | 'fixed_window';

/** Buckets per sliding window (the resolution of the sliding log). */
export const SLIDING_BUCKETS = 60;

/** One counter a request touches. */
export interface CounterSpec {
  /** Store key, already hash-tagged (see descriptors.ts). */
  key: string;
  algorithm: CounterAlgorithm;
  /** The most requests admitted in one window: the policy's requests + burst. */
  capacity: number;
  windowMs: number;
  /** Requests this call adds (Envoy's hits_addend; 1 unless Envoy says otherwise). */
  hits: number;
}

/** What one counter says about one call. */
export interface CounterVerdict {
  /** This counter alone would refuse the call. */
  over: boolean;
  /** Requests counted in the window: after this call when it was admitted, before it otherwise. */
  used: number;
  /** ms until this counter would admit the call (0 when not over). */
  retryAfterMs: number;
  /** ms until the count next goes down: the oldest counted bucket leaves (sliding) or the window ends (fixed); 0 when nothing is counted. */
  resetMs: number;
}

/** One decision over all of a request's counters: all are counted, or none. */
export interface Decision {
  admitted: boolean;
  verdicts: CounterVerdict[];
}

/** Bucket width in ms: the whole window for fixed windows, window / 60 for sliding ones. */
export function bucketMs(algorithm: CounterAlgorithm, windowMs: number): number {
  return algorithm === 'fixed_window' ? windowMs : Math.max(1, Math.floor(windowMs / SLIDING_BUCKETS));
}

/** The bucket range [oldest, newest] that counts at `nowMs`. */
export function countedRange(spec: CounterSpec, nowMs: number): { oldest: number; newest: number; width: number } {
  const width = bucketMs(spec.algorithm, spec.windowMs);
  const newest = Math.floor(nowMs / width);
  // (now - window, now] in integer ms is [now - window + 1, now].
  const oldest = spec.algorithm === 'fixed_window' ? newest : Math.floor((nowMs - spec.windowMs + 1) / width);
  return { oldest, newest, width };
}

/**
 * One counter's verdict from its buckets (index -> count). Buckets newer than
 * `newest` (a replica whose clock runs ahead wrote them) count too: erring on
 * the side of refusing keeps "never over" across clocks that disagree slightly.
 */
export function assess(buckets: ReadonlyMap<number, number>, spec: CounterSpec, nowMs: number): CounterVerdict {
  const { oldest, newest, width } = countedRange(spec, nowMs);
  const counted = [...buckets.entries()].filter(([index]) => index >= oldest).sort((a, b) => a[0] - b[0]);
  const used = counted.reduce((sum, [, count]) => sum + count, 0);
  const over = used + spec.hits > spec.capacity;
  return {
    over,
    used,
    retryAfterMs: over ? retryAfter(counted, used, spec, nowMs, newest, width) : 0,
    resetMs: resetAfter(counted, spec, nowMs, newest, width),
  };
}

/** ms until enough of the oldest buckets have left the window to make room for `hits`. */
function retryAfter(counted: Array<[number, number]>, used: number, spec: CounterSpec, nowMs: number, newest: number, width: number): number {
  if (spec.algorithm === 'fixed_window') return (newest + 1) * width - nowMs;
  const need = used + spec.hits - spec.capacity;
  // More hits than the capacity can never fit; a whole window is the honest "not soon".
  if (spec.hits > spec.capacity) return spec.windowMs;
  let freed = 0;
  for (const [index, count] of counted) {
    freed += count;
    // Bucket b stops counting once floor((t - window + 1) / g) > b, i.e. at t = (b + 1) g + window - 1.
    if (freed >= need) return Math.max(1, (index + 1) * width + spec.windowMs - 1 - nowMs);
  }
  return spec.windowMs;
}

function resetAfter(counted: Array<[number, number]>, spec: CounterSpec, nowMs: number, newest: number, width: number): number {
  if (spec.algorithm === 'fixed_window') return (newest + 1) * width - nowMs;
  const first = counted[0];
  return first ? Math.max(0, (first[0] + 1) * width + spec.windowMs - 1 - nowMs) : 0;
}

/** The verdict for an admitted call: its hits are now counted (the reset may move if nothing was counted before). */
export function afterAdmission(verdict: CounterVerdict, spec: CounterSpec, nowMs: number): CounterVerdict {
  const { newest, width } = countedRange(spec, nowMs);
  const resetMs =
    verdict.used === 0 && spec.algorithm === 'sliding_window' ? (newest + 1) * width + spec.windowMs - 1 - nowMs : verdict.resetMs;
  return { over: false, used: verdict.used + spec.hits, retryAfterMs: 0, resetMs };
}
