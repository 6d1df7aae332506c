// Fleet traffic statistics read by the admin API and the rollout controller.
// The rolling-window store that implements this lives in fleet-window.ts.

/** Traffic seen across the whole fleet in a time window (counts are exact; percentiles come from merged histograms). */
export interface WindowStats {
  requests: number;
  status2xx: number;
  status4xx: number;
  status5xx: number;
  p50Ms?: number;
  p95Ms?: number;
  p99Ms?: number;
}

/** sinceMs is epoch milliseconds: the stats of the window buckets that start at or after it. */
export interface FleetStatsReader {
  upstream(name: string, sinceMs: number): WindowStats;
  route(name: string, sinceMs: number): WindowStats;
}
