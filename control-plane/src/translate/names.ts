// Envoy-side names Sluice derives from its own, in one place.

export function listenerName(port: number): string {
  return `sluice_http_${port}`;
}

export function routeConfigName(port: number): string {
  return `sluice_routes_${port}`;
}

export function clusterName(upstream: string): string {
  return `upstream_${upstream}`;
}

/** HTTP filter names; also the keys of typed_per_filter_config. */
export const FILTER = {
  headerMutation: 'envoy.filters.http.header_mutation',
  cors: 'envoy.filters.http.cors',
  extAuthz: 'envoy.filters.http.ext_authz',
  /** A second ext_authz with failure_mode_allow, for routes with auth.on_error allow (see filters.ts). */
  extAuthzFailOpen: 'sluice.filters.http.ext_authz_fail_open',
  localRateLimit: 'envoy.filters.http.local_ratelimit',
  rateLimit: 'envoy.filters.http.ratelimit',
  /** A second ratelimit filter with failure_mode_deny, for routes with an on_error deny policy (see filters.ts). */
  rateLimitFailClosed: 'sluice.filters.http.ratelimit_fail_closed',
  router: 'envoy.filters.http.router',
} as const;

export const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
export const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';
export const HTTP_PROTOCOL_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** Stat prefix of the per-route local token buckets. */
export const LOCAL_RATELIMIT_STAT_PREFIX = 'sluice_local_ratelimit';
