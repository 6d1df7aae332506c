// Counters for the authz service, kept as plain numbers so the observability
// work can expose them in any format (no Prometheus server here).

/** Upper bounds (ms) of the check-latency histogram buckets; +Inf is implied. */
export const LATENCY_BUCKETS_MS: readonly number[] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250];

export interface LatencyHistogram {
  /** Cumulative-free counts per bucket, same order as LATENCY_BUCKETS_MS, plus one overflow bucket. */
  counts: number[];
  sumMs: number;
  count: number;
}

export interface AuthzMetricsSnapshot {
  /** Checks by `result/reason`, e.g. `allow/api_key`, `deny/token_expired`. */
  checks: Record<string, number>;
  /** JWKS fetches by `provider/outcome` (ok | error). */
  jwksFetches: Record<string, number>;
  /** Allows handed back from the answer cache (answers.ts), also counted in `checks`. */
  answersFromCache: number;
  latency: LatencyHistogram;
}

export class AuthzMetrics {
  private readonly checks = new Map<string, number>();
  private readonly jwksFetches = new Map<string, number>();
  private answersFromCache = 0;
  private readonly latency: LatencyHistogram = { counts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0), sumMs: 0, count: 0 };

  recordCheck(result: 'allow' | 'deny' | 'error', reason: string, elapsedMs: number): void {
    bump(this.checks, `${result}/${reason}`);
    let bucket = LATENCY_BUCKETS_MS.findIndex((bound) => elapsedMs <= bound);
    if (bucket < 0) bucket = LATENCY_BUCKETS_MS.length;
    this.latency.counts[bucket] = (this.latency.counts[bucket] ?? 0) + 1;
    this.latency.sumMs += elapsedMs;
    this.latency.count += 1;
  }

  recordAnswerFromCache(): void {
    this.answersFromCache += 1;
  }

  recordJwksFetch(provider: string, outcome: 'ok' | 'error'): void {
    bump(this.jwksFetches, `${provider}/${outcome}`);
  }

  snapshot(): AuthzMetricsSnapshot {
    return {
      checks: Object.fromEntries(this.checks),
      jwksFetches: Object.fromEntries(this.jwksFetches),
      answersFromCache: this.answersFromCache,
      latency: { counts: [...this.latency.counts], sumMs: this.latency.sumMs, count: this.latency.count },
    };
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
