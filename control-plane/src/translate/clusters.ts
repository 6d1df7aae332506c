// Upstream -> Cluster (+ ClusterLoadAssignment), and the static clusters of the
// gRPC services Envoy calls (authz, rate limit).
import { type Upstream, canonicalIp, isIpLiteral } from '../model/index.ts';
import type { Cluster, ClusterLoadAssignment, UpstreamTlsContext } from '../proto/codec.ts';
import { HTTP_PROTOCOL_OPTIONS_KEY, TLS_TRANSPORT_SOCKET, clusterName } from './names.ts';
import type { TranslateOptions } from './options.ts';
import { adsConfigSource, compareStrings, duration, socketAddress, typed, uint32 } from './util.ts';

const LB_POLICY = {
  round_robin: 'ROUND_ROBIN',
  least_request: 'LEAST_REQUEST',
  ring_hash: 'RING_HASH',
  random: 'RANDOM',
} as const;

/**
 * EDS needs IP addresses (Envoy does not resolve names in EDS). An upstream whose
 * endpoints are all IP literals gets an EDS cluster fed over ADS, so endpoint
 * changes do not touch the cluster; one with any hostname gets a STRICT_DNS
 * cluster carrying its endpoints inline. (One exception: a verified TLS upstream
 * without `sni` checks each endpoint's IP SAN, so its cluster lists the addresses.)
 */
export function usesEds(upstream: Upstream): boolean {
  return upstream.endpoints.every((endpoint) => isIpLiteral(endpoint.host));
}

export function upstreamCluster(upstream: Upstream, options: Pick<TranslateOptions, 'systemCaFile'> = {}): Cluster {
  const name = clusterName(upstream.name);
  const eds = usesEds(upstream);
  return {
    name,
    type: eds ? 'EDS' : 'STRICT_DNS',
    eds_cluster_config: eds ? { eds_config: adsConfigSource() } : undefined,
    load_assignment: eds ? undefined : upstreamLoadAssignment(upstream),
    dns_lookup_family: eds ? undefined : 'V4_PREFERRED',
    connect_timeout: duration(upstream.connect_timeout_ms),
    lb_policy: LB_POLICY[upstream.lb_policy],
    ring_hash_lb_config: upstream.lb_policy === 'ring_hash' ? {} : undefined,
    circuit_breakers: circuitBreakers(upstream),
    outlier_detection: outlierDetection(upstream),
    health_checks: upstream.health_check ? [healthCheck(upstream)] : undefined,
    transport_socket: upstream.tls ? tlsTransportSocket(upstream, options) : undefined,
    typed_extension_protocol_options: upstream.protocol === 'http2' ? http2Options() : undefined,
  };
}

/** Endpoints sorted by host and port, so input order never changes the bytes. */
export function upstreamLoadAssignment(upstream: Upstream): ClusterLoadAssignment {
  const endpoints = [...upstream.endpoints].sort((a, b) => compareStrings(a.host, b.host) || a.port - b.port);
  return {
    cluster_name: clusterName(upstream.name),
    endpoints: [
      {
        lb_endpoints: endpoints.map((endpoint) => ({
          endpoint: { address: socketAddress(endpoint.host, endpoint.port) },
          load_balancing_weight: uint32(endpoint.weight),
        })),
      },
    ],
  };
}

function circuitBreakers(upstream: Upstream): Cluster['circuit_breakers'] {
  const cb = upstream.circuit_breakers;
  if (!cb) return undefined;
  const optional = (value: number | undefined) => (value === undefined ? undefined : uint32(value));
  return {
    thresholds: [
      {
        priority: 'DEFAULT',
        max_connections: optional(cb.max_connections),
        max_pending_requests: optional(cb.max_pending_requests),
        max_requests: optional(cb.max_requests),
        max_retries: optional(cb.max_retries),
      },
    ],
  };
}

function outlierDetection(upstream: Upstream): Cluster['outlier_detection'] {
  const od = upstream.outlier_detection;
  if (!od) return undefined;
  return {
    consecutive_5xx: od.consecutive_5xx === undefined ? undefined : uint32(od.consecutive_5xx),
    interval: od.interval_ms === undefined ? undefined : duration(od.interval_ms),
    base_ejection_time: od.base_ejection_time_ms === undefined ? undefined : duration(od.base_ejection_time_ms),
    max_ejection_percent: od.max_ejection_percent === undefined ? undefined : uint32(od.max_ejection_percent),
  };
}

type HealthCheck = NonNullable<Cluster['health_checks']>[number];

function healthCheck(upstream: Upstream): HealthCheck {
  const hc = upstream.health_check!;
  return {
    timeout: duration(hc.timeout_ms),
    interval: duration(hc.interval_ms),
    healthy_threshold: uint32(hc.healthy_threshold),
    unhealthy_threshold: uint32(hc.unhealthy_threshold),
    http_health_check: {
      path: hc.path,
      expected_statuses: hc.expected_statuses ? statusRanges(hc.expected_statuses) : undefined,
      codec_client_type: upstream.protocol === 'http2' ? 'HTTP2' : 'HTTP1',
    },
  };
}

/** Status codes as Envoy's half-open [start, end) ranges, adjacent codes merged. */
export function statusRanges(codes: readonly number[]): Array<{ start: number; end: number }> {
  const sorted = [...new Set(codes)].sort((a, b) => a - b);
  const ranges: Array<{ start: number; end: number }> = [];
  for (const code of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && last.end === code) last.end = code + 1;
    else ranges.push({ start: code, end: code + 1 });
  }
  return ranges;
}

/** Where Debian/Ubuntu (and Envoy's official images) keep the system CA bundle. */
export const DEFAULT_SYSTEM_CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

type ValidationContext = NonNullable<NonNullable<UpstreamTlsContext['common_tls_context']>['validation_context']>;
type SanMatcher = NonNullable<ValidationContext['match_typed_subject_alt_names']>[number];

function tlsTransportSocket(upstream: Upstream, options: Pick<TranslateOptions, 'systemCaFile'>): Cluster['transport_socket'] {
  const tls = upstream.tls!;
  const context: UpstreamTlsContext = {
    sni: sniFor(upstream),
    common_tls_context: {
      alpn_protocols: [upstream.protocol === 'http2' ? 'h2' : 'http/1.1'],
      validation_context: tls.insecure_skip_verify ? undefined : validationContext(upstream, options),
    },
  };
  return { name: TLS_TRANSPORT_SOCKET, typed_config: typed('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', context) };
}

/**
 * Trust and name, as the model promises. Envoy does not implement
 * `system_root_certs` (the API marks it for gRPC clients only): with it alone
 * nothing is verified and a self-signed upstream is reached; and Envoy refuses a
 * SAN check without `trusted_ca`. So "system roots" is the system CA bundle file,
 * read by Envoy on its own host.
 */
function validationContext(upstream: Upstream, options: Pick<TranslateOptions, 'systemCaFile'>): ValidationContext {
  const caPem = upstream.tls!.verify?.ca_pem;
  return {
    trusted_ca: caPem ? { inline_string: caPem } : { filename: options.systemCaFile ?? DEFAULT_SYSTEM_CA_FILE },
    match_typed_subject_alt_names: expectedNames(upstream),
  };
}

/** `sni`, else the endpoints' hostname when they all share one (an IP is never sent as SNI). */
function sniFor(upstream: Upstream): string | undefined {
  if (upstream.tls!.sni) return upstream.tls!.sni;
  const names = new Set(upstream.endpoints.map((e) => (isIpLiteral(e.host) ? '' : e.host.toLowerCase())));
  const [only] = names;
  return names.size === 1 && only !== '' ? only : undefined;
}

/**
 * The names the server certificate must carry (any one of them): `sni` as a DNS
 * SAN, else each endpoint's hostname (DNS SAN) or address (IP SAN). Sorted and
 * deduplicated so endpoint order never changes the bytes.
 */
function expectedNames(upstream: Upstream): SanMatcher[] {
  const sni = upstream.tls!.sni;
  if (sni) return [{ san_type: 'DNS', matcher: { exact: sni } }];
  const byKey = new Map<string, SanMatcher>();
  for (const { host } of upstream.endpoints) {
    const ip = isIpLiteral(host);
    // Envoy compares an IP SAN as its own text form of the address: canonical (RFC 5952 for IPv6).
    const name = ip ? canonicalIp(host) : host.toLowerCase();
    byKey.set(`${ip ? 'IP' : 'DNS'} ${name}`, { san_type: ip ? 'IP_ADDRESS' : 'DNS', matcher: { exact: name } });
  }
  return [...byKey.entries()].sort(([a], [b]) => compareStrings(a, b)).map(([, matcher]) => matcher);
}

function http2Options(): Cluster['typed_extension_protocol_options'] {
  return {
    [HTTP_PROTOCOL_OPTIONS_KEY]: typed('envoy.extensions.upstreams.http.v3.HttpProtocolOptions', {
      explicit_http_config: { http2_protocol_options: {} },
    }),
  };
}

/**
 * A cluster for a gRPC service beside Envoy (authz, rate limit): one address,
 * STATIC for an IP or STRICT_DNS for a name, always HTTP/2.
 */
export function serviceCluster(name: string, host: string, port: number): Cluster {
  return {
    name,
    type: isIpLiteral(host) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: duration(1_000),
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(host, port) } }] }],
    },
    typed_extension_protocol_options: http2Options(),
  };
}
