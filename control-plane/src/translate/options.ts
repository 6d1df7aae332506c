// Deployment settings translation needs beyond the State.

/** A gRPC service Envoy calls: the cluster Sluice emits for it, and its address. */
export interface ServiceEndpoint {
  clusterName: string;
  host: string;
  port: number;
}

/** The authz service and how long Envoy waits for its answer. */
export interface AuthzEndpoint extends ServiceEndpoint {
  /**
   * ext_authz gRPC deadline (AUTHZ_TIMEOUT_MS; default in filters.ts, 500 ms): past
   * it the check counts as an error and the route's auth.on_error decides.
   */
  timeoutMs?: number;
}

/**
 * Limits on what a client of the gateway listener may hold or send. The defaults
 * follow Envoy's "Configuring Envoy as an edge proxy" guidance; where it names no
 * value (request headers timeout) the default is Sluice's choice, said below.
 */
export interface EdgeOptions {
  /** Time to receive all request headers (slowloris). Sluice's default: 10 s. */
  requestHeadersTimeoutMs: number;
  /** A stream with no activity is closed after this long (edge guidance: 5 min). */
  streamIdleTimeoutMs: number;
  /** Time to receive the whole request (edge guidance: 5 min). */
  requestTimeoutMs: number;
  /** A connection with no streams is closed after this long (edge guidance: 1 h). */
  connectionIdleTimeoutMs: number;
  /** Request headers (with the request line) above this get 431 (Envoy's default 60; max 8192). */
  maxRequestHeadersKb: number;
  /** Read/write buffer per downstream connection (edge guidance: 32 KiB). */
  perConnectionBufferLimitBytes: number;
  /** HTTP/2 streams per connection (edge guidance: 100). */
  http2MaxConcurrentStreams: number;
  /** HTTP/2 initial stream window (edge guidance: 64 KiB). */
  http2InitialStreamWindowBytes: number;
  /** HTTP/2 initial connection window (edge guidance: 1 MiB). */
  http2InitialConnectionWindowBytes: number;
  /**
   * Proxies in front of Envoy whose X-Forwarded-For entries are trusted. 0 (the
   * default): the client address is the TCP peer and any client-sent X-Forwarded-For
   * is only appended to, never believed.
   */
  xffTrustedHops: number;
}

export const EDGE_DEFAULTS: Readonly<EdgeOptions> = Object.freeze({
  requestHeadersTimeoutMs: 10_000,
  streamIdleTimeoutMs: 300_000,
  requestTimeoutMs: 300_000,
  connectionIdleTimeoutMs: 3_600_000,
  maxRequestHeadersKb: 60,
  perConnectionBufferLimitBytes: 32_768,
  http2MaxConcurrentStreams: 100,
  http2InitialStreamWindowBytes: 65_536,
  http2InitialConnectionWindowBytes: 1_048_576,
  xffTrustedHops: 0,
});

export interface TranslateOptions {
  listenerPort: number;
  /** Default 0.0.0.0. */
  listenerAddress?: string;
  /** The Sluice authz service; without it, routes that need auth answer 503 (fail closed). */
  authz?: AuthzEndpoint;
  /**
   * The Sluice rate-limit service; without it, only the local shield limits apply.
   * timeoutMs: Envoy's deadline for it (default filters.ts DEFAULT_RATELIMIT_TIMEOUT_MS).
   */
  ratelimit?: ServiceEndpoint & { domain: string; timeoutMs?: number };
  /**
   * The system CA bundle file, on Envoy's host, that verifies upstream TLS without
   * its own CA (default in clusters.ts: DEFAULT_SYSTEM_CA_FILE).
   */
  systemCaFile?: string;
  /** Overrides of EDGE_DEFAULTS for the gateway listener. */
  edge?: Partial<EdgeOptions>;
  /** Where the gateway listener writes its JSON access log (see access-log.ts); absent: no access log. */
  accessLog?: AccessLogOptions;
  /** Trace context and span export (see tracing.ts); trace context is on even when absent. */
  tracing?: TracingOptions;
  /** Which routes get per-route upstream stats (see ROUTE_STATS_MODES); default 'all'. */
  routeStats?: RouteStatsMode;
}

/**
 * Per-route upstream stats (vhost.<vhost>.route.<name>.*, what the fleet stats
 * window and canary analysis read) cost Envoy on every route-table update: it
 * builds each route's stats anew, about 20 µs per route (measured on Envoy
 * 1.38, 2 cores: a 1,000-route table applies in ~2 ms without them, ~25 ms
 * with). 'all': every route (full per-route visibility); 'traffic_split':
 * routes with a split or canary action only, which is what rollouts need
 * (for gateways with many thousands of routes); 'off': none.
 */
export const ROUTE_STATS_MODES = ['all', 'traffic_split', 'off'] as const;
export type RouteStatsMode = (typeof ROUTE_STATS_MODES)[number];

/** Stdout (a container's log) or an absolute file path on Envoy's host. */
export type AccessLogOptions = { to: 'stdout' } | { to: 'file'; path: string };

export interface TracingOptions {
  /** OTLP/gRPC collector Envoy exports spans to; absent (the default): spans are not exported. */
  otlpCollector?: ServiceEndpoint;
  /** Share of requests without a client decision that are sampled, 0-100 (default 100). */
  samplingPercent?: number;
}

/** EDGE_DEFAULTS with the given overrides (undefined values keep the default). */
export function edgeOptions(overrides: Partial<EdgeOptions> | undefined): EdgeOptions {
  const out: EdgeOptions = { ...EDGE_DEFAULTS };
  for (const key of Object.keys(out) as Array<keyof EdgeOptions>) {
    const value = overrides?.[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
