// Counters for the rate-limit service, kept as plain numbers so the observability
// work can expose them in any format.

/** Upper bounds (ms) of the store round-trip histogram buckets; +Inf is implied. */
export const STORE_LATENCY_BUCKETS_MS: readonly number[] = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100];

/** Per-policy outcomes: counted under the limit, refused, or decided by the failure mode. */
export type DecisionResult = 'ok' | 'over_limit' | 'error_allowed' | 'error_denied';

export interface RateLimitMetricsSnapshot {
  /** Decisions by `<policy>/<result>` (one per counter a request touched). */
  decisions: Record<string, number>;
  /** Requests refused, by the policy that refused them (a request over two policies counts for both). */
  overLimit: Record<string, number>;
  /** Store calls that failed or timed out. */
  storeErrors: number;
  /** Store round-trip latency: counts per bucket (STORE_LATENCY_BUCKETS_MS, then overflow). */
  storeLatency: { counts: number[]; sumMs: number; count: number };
}

export class RateLimitMetrics {
  private readonly decisions = new Map<string, number>();
  private readonly overLimit = new Map<string, number>();
  private storeErrors = 0;
  private readonly latency = { counts: new Array<number>(STORE_LATENCY_BUCKETS_MS.length + 1).fill(0), sumMs: 0, count: 0 };

  recordDecision(policy: string, result: DecisionResult): void {
    bump(this.decisions, `${policy}/${result}`);
    if (result === 'over_limit') bump(this.overLimit, policy);
  }

  recordStoreCall(elapsedMs: number, ok: boolean): void {
    if (!ok) this.storeErrors += 1;
    let bucket = STORE_LATENCY_BUCKETS_MS.findIndex((bound) => elapsedMs <= bound);
    if (bucket < 0) bucket = STORE_LATENCY_BUCKETS_MS.length;
    this.latency.counts[bucket] = (this.latency.counts[bucket] ?? 0) + 1;
    this.latency.sumMs += elapsedMs;
    this.latency.count += 1;
  }

  snapshot(): RateLimitMetricsSnapshot {
    return {
      decisions: Object.fromEntries(this.decisions),
      overLimit: Object.fromEntries(this.overLimit),
      storeErrors: this.storeErrors,
      storeLatency: { counts: [...this.latency.counts], sumMs: this.latency.sumMs, count: this.latency.count },
    };
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
