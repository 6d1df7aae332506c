// The authz and rate-limit services' counters on /metrics. Those services keep
// plain numbers (they also run as their own processes, without prom-client);
// these collectors read a snapshot at scrape time. Shapes are declared here
// structurally (authz/metrics.ts and ratelimit/metrics.ts snapshots fit), so
// telemetry/ imports neither service. Label values are policy and provider
// names: bounded by the config, not by traffic.
import { Counter, type Registry } from 'prom-client';
import { BucketHistogram } from './bucket-histogram.ts';

export interface LatencyCounts {
  counts: readonly number[];
  sumMs: number;
}

export interface AuthzCounters {
  /** `result/reason` -> checks. */
  checks: Record<string, number>;
  /** `provider/outcome` -> JWKS fetches. */
  jwksFetches: Record<string, number>;
  /** Allows answered from the authz answer cache. */
  answersFromCache: number;
  latency: LatencyCounts;
}

export interface RateLimitCounters {
  /** `policy/result` -> decisions. */
  decisions: Record<string, number>;
  storeErrors: number;
  storeLatency: LatencyCounts;
}

const msToSeconds = (bounds: readonly number[]): number[] => bounds.map((ms) => ms / 1000);

/** Splits `a/b` at its last slash (names may hold slashes; results never do). */
function splitKey(key: string): [string, string] {
  const at = key.lastIndexOf('/');
  return at < 0 ? [key, ''] : [key.slice(0, at), key.slice(at + 1)];
}

/** A counter family set from a snapshot at each scrape. */
function snapshotCounter(registry: Registry, name: string, help: string, labelNames: [string, string], read: () => Record<string, number> | undefined): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of Object.entries(read() ?? {})) {
        const [a, b] = splitKey(key);
        this.inc({ [labelNames[0]]: a, [labelNames[1]]: b }, n);
      }
    },
  });
}

export function exposeAuthz(registry: Registry, read: () => AuthzCounters, latencyBoundsMs: readonly number[]): void {
  snapshotCounter(registry, 'sluice_authz_checks_total', 'Authz checks by result and reason.', ['result', 'reason'], () => read().checks);
  snapshotCounter(registry, 'sluice_authz_jwks_fetches_total', 'JWKS fetches by provider and outcome.', ['provider', 'outcome'], () => read().jwksFetches);
  new Counter({
    name: 'sluice_authz_answers_cached_total',
    help: 'Authz allows handed back from the answer cache (also counted in sluice_authz_checks_total).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read().answersFromCache);
    },
  });
  new BucketHistogram({
    name: 'sluice_authz_check_duration_seconds',
    help: 'Time to decide one authz check.',
    labelNames: [],
    bounds: msToSeconds(latencyBoundsMs),
    registry,
    read: () => {
      const { counts, sumMs } = read().latency;
      return [{ labels: {}, counts, sum: sumMs / 1000 }];
    },
  });
}

export function exposeRateLimit(registry: Registry, read: () => RateLimitCounters, latencyBoundsMs: readonly number[]): void {
  snapshotCounter(registry, 'sluice_ratelimit_decisions_total', 'Rate-limit decisions by policy and result (ok, over_limit, error_allowed, error_denied).', ['policy', 'result'], () => read().decisions);
  new Counter({
    name: 'sluice_ratelimit_store_errors_total',
    help: 'Rate-limit counter-store calls that failed or timed out.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read().storeErrors);
    },
  });
  new BucketHistogram({
    name: 'sluice_ratelimit_store_duration_seconds',
    help: 'Round trip to the rate-limit counter store.',
    labelNames: [],
    bounds: msToSeconds(latencyBoundsMs),
    registry,
    read: () => {
      const { counts, sumMs } = read().storeLatency;
      return [{ labels: {}, counts, sum: sumMs / 1000 }];
    },
  });
}
