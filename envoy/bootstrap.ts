// The Envoy bootstrap Sluice hands to every proxy: everything (listeners,
// routes, clusters, endpoints) comes over one ADS stream from the control
// plane; the only static piece is the cluster that reaches the control plane.
// Pure: returns a JSON object (valid YAML too) for `--config-yaml` or `-c x.json`.
import { isIP } from 'node:net';
import { ENVOY_RE2_PROGRAM_SIZE_LIMIT } from '../control-plane/src/model/re2.ts';

export interface AdsBootstrapOptions {
  nodeId: string;
  nodeCluster: string;
  /** Control-plane xDS address: an IP (STATIC cluster) or a DNS name (STRICT_DNS). */
  adsHost: string;
  adsPort: number;
  /**
   * The other control-plane replicas (same certificate name with TLS). The xds
   * cluster lists them all, so an Envoy whose replica dies re-opens its ADS
   * stream on another (round robin moves to the next endpoint on each retry).
   */
  adsReplicas?: Array<{ host: string; port: number }>;
  adminPort: number;
  /** Delta xDS (DELTA_GRPC) instead of state-of-the-world (GRPC). */
  delta?: boolean;
  /** Admin listen address; loopback by default so the admin API is never exposed. */
  adminHost?: string;
  /** Global cap on downstream connections (overload manager); default DEFAULT_MAX_DOWNSTREAM_CONNECTIONS. */
  maxDownstreamConnections?: number;
  /** Mutual TLS to the control plane (files as Envoy sees them); plaintext when absent. */
  tls?: AdsTlsFiles;
  /** Stream stats to the control plane's metrics service (fleet traffic stats); on by default, `false` turns it off. */
  metricsSink?: false | MetricsSinkOptions;
}

export interface MetricsSinkOptions {
  /** How often Envoy flushes stats to its sinks (default DEFAULT_STATS_FLUSH_MS). */
  flushIntervalMs?: number;
}

/** Envoy's own default stats flush interval: the fleet stats' resolution. */
export const DEFAULT_STATS_FLUSH_MS = 5_000;

const METRICS_SERVICE_CONFIG = 'envoy.config.metrics.v3.MetricsServiceConfig';

/**
 * The metrics_service stat sink, over the same cluster as xDS. Tags become
 * labels (cluster and route names arrive as labels, not inside stat names), and
 * histograms are sent as cumulative buckets only, which can be merged across
 * Envoys (quantile summaries cannot).
 */
function metricsSink(): JsonValue {
  return {
    name: 'envoy.stat_sinks.metrics_service',
    typed_config: {
      '@type': `type.googleapis.com/${METRICS_SERVICE_CONFIG}`,
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: XDS_CLUSTER } },
      emit_tags_as_labels: true,
      histogram_emit_mode: 'HISTOGRAM',
    },
  };
}

function statsSinkFields(sink: false | MetricsSinkOptions | undefined): { [key: string]: JsonValue } {
  if (sink === false) return {};
  const ms = sink?.flushIntervalMs ?? DEFAULT_STATS_FLUSH_MS;
  return { stats_sinks: [metricsSink()], stats_flush_interval: `${ms / 1000}s` };
}

export interface AdsTlsFiles {
  /** This node's client certificate chain and key (PEM). */
  certFile: string;
  keyFile: string;
  /** CA bundle the control plane's certificate must chain to. */
  caFile: string;
  /** Name the control plane's certificate must carry (SNI and SAN check); default `adsHost`. */
  serverName?: string;
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type EnvoyBootstrap = { [key: string]: JsonValue };

export const XDS_CLUSTER = 'sluice_xds';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

function socketAddress(address: string, port: number): JsonValue {
  return { socket_address: { address, port_value: port } };
}

const UPSTREAM_TLS = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/**
 * The xds cluster's TLS: present this node's certificate, trust only `caFile`,
 * and require the control plane's name in its certificate's SANs (an IP SAN
 * when the name is an IP literal, which cannot go in SNI). ALPN h2: Node's
 * HTTP/2 server closes TLS connections that do not negotiate it.
 */
function adsTransportSocket(tls: AdsTlsFiles, adsHost: string): JsonValue {
  const name = tls.serverName ?? adsHost;
  const ip = isIP(name) !== 0;
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': `type.googleapis.com/${UPSTREAM_TLS}`,
      ...(ip ? {} : { sni: name }),
      common_tls_context: {
        alpn_protocols: ['h2'],
        tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }],
        validation_context: {
          trusted_ca: { filename: tls.caFile },
          match_typed_subject_alt_names: [{ san_type: ip ? 'IP_ADDRESS' : 'DNS', matcher: { exact: name } }],
        },
      },
    },
  };
}

/**
 * Runtime values every Sluice Envoy starts with. re2.max_program_size: Envoy's
 * default (100) refuses ordinary regexes with a little multi-byte text; the
 * model (model/re2.ts) checks every regex against this same limit with a
 * conservative upper bound of RE2's program size, so raising it here is what
 * lets the model's promise hold ("admitted => accepted").
 */
function staticRuntime(): { [key: string]: JsonValue } {
  return {
    're2.max_program_size.error_level': ENVOY_RE2_PROGRAM_SIZE_LIMIT,
    're2.max_program_size.warn_level': ENVOY_RE2_PROGRAM_SIZE_LIMIT,
  };
}

/** Envoy's edge guidance (the Google VRP edge example) caps an edge Envoy at 50,000. */
export const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS = 50_000;

const DOWNSTREAM_CONNECTIONS_CONFIG = 'envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig';

/**
 * A global limit on downstream connections across all listeners, so a flood of
 * idle connections cannot exhaust file descriptors or memory; past it Envoy
 * refuses new connections. (Without it Envoy warns at start that there is none.)
 * A heap-based monitor is left to deployments: its limit depends on the container.
 */
function overloadManager(maxConnections: number): JsonValue {
  return {
    resource_monitors: [
      {
        name: 'envoy.resource_monitors.global_downstream_max_connections',
        typed_config: { '@type': `type.googleapis.com/${DOWNSTREAM_CONNECTIONS_CONFIG}`, max_active_downstream_connections: maxConnections },
      },
    ],
  };
}

/** Every control-plane replica the xds cluster lists: the primary first. */
function adsEndpoints(opts: AdsBootstrapOptions): Array<{ host: string; port: number }> {
  return [{ host: opts.adsHost, port: opts.adsPort }, ...(opts.adsReplicas ?? [])];
}

export function adsBootstrap(opts: AdsBootstrapOptions): EnvoyBootstrap {
  const adsSource = { ads: {}, resource_api_version: 'V3' };
  return {
    node: { id: opts.nodeId, cluster: opts.nodeCluster },
    dynamic_resources: {
      ads_config: {
        api_type: opts.delta ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        // The node is sent once per stream; the server remembers it.
        set_node_on_first_message_only: true,
        grpc_services: [
          {
            envoy_grpc: {
              cluster_name: XDS_CLUSTER,
              // Re-open the ADS stream quickly after a control-plane restart
              // (Envoy's default backoff grows to 30 s).
              retry_policy: { retry_back_off: { base_interval: '0.1s', max_interval: '1s' } },
            },
          },
        ],
      },
      lds_config: adsSource,
      cds_config: adsSource,
    },
    static_resources: {
      clusters: [
        {
          name: XDS_CLUSTER,
          // STATIC needs an IP literal; a hostname (e.g. a Kubernetes Service) needs DNS.
          type: adsEndpoints(opts).every((endpoint) => isIP(endpoint.host)) ? 'STATIC' : 'STRICT_DNS',
          connect_timeout: '1s',
          ...(opts.tls ? { transport_socket: adsTransportSocket(opts.tls, opts.adsHost) } : {}),
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [{ lb_endpoints: adsEndpoints(opts).map((endpoint) => ({ endpoint: { address: socketAddress(endpoint.host, endpoint.port) } })) }],
          },
          // gRPC needs HTTP/2 to the control plane.
          typed_extension_protocol_options: {
            [HTTP_PROTOCOL_OPTIONS]: {
              '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
              explicit_http_config: {
                http2_protocol_options: {
                  // Detect a dead control plane even when no packet says so.
                  connection_keepalive: { interval: '10s', timeout: '5s' },
                },
              },
            },
          },
        },
      ],
    },
    admin: { address: socketAddress(opts.adminHost ?? '127.0.0.1', opts.adminPort) },
    overload_manager: overloadManager(opts.maxDownstreamConnections ?? DEFAULT_MAX_DOWNSTREAM_CONNECTIONS),
    layered_runtime: { layers: [{ name: 'static', static_layer: staticRuntime() }] },
    ...statsSinkFields(opts.metricsSink),
  };
}
