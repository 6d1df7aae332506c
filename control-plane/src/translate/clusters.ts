// Upstream -> Cluster (+ ClusterLoadAssignment), and the static clusters of the
// gRPC services Envoy calls (authz, rate limit).
import type { Upstream } from '../model/index.ts';
import type { Cluster, ClusterLoadAssignment } from '../proto/codec.ts';
import { HTTP_PROTOCOL_OPTIONS_KEY, TLS_TRANSPORT_SOCKET, clusterName } from './names.ts';
import { adsConfigSource, compareStrings, duration, isIpLiteral, socketAddress, typed, uint32 } from './util.ts';

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
 * cluster carrying its endpoints inline.
 */
export function usesEds(upstream: Upstream): boolean {
  return upstream.endpoints.every((endpoint) => isIpLiteral(endpoint.host));
}

export function upstreamCluster(upstream: Upstream): Cluster {
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
    transport_socket: upstream.tls ? tlsTransportSocket(upstream) : undefined,
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

function tlsTransportSocket(upstream: Upstream): Cluster['transport_socket'] {
  const tls = upstream.tls!;
  const verify = tls.verify;
  return {
    name: TLS_TRANSPORT_SOCKET,
    typed_config: typed('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      sni: tls.sni,
      common_tls_context: {
        alpn_protocols: [upstream.protocol === 'http2' ? 'h2' : 'http/1.1'],
        validation_context: verify
          ? {
              trusted_ca: verify.ca_pem ? { inline_string: verify.ca_pem } : undefined,
              system_root_certs: verify.ca_pem ? undefined : {},
              // Without a name check any certificate the CA signed would pass.
              match_typed_subject_alt_names: tls.sni ? [{ san_type: 'DNS', matcher: { exact: tls.sni } }] : undefined,
            }
          : undefined,
      },
    }),
  };
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
