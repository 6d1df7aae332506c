// The Envoy bootstrap Sluice hands to every proxy: everything (listeners,
// routes, clusters, endpoints) comes over one ADS stream from the control
// plane; the only static piece is the cluster that reaches the control plane.
// Pure: returns a JSON object (valid YAML too) for `--config-yaml` or `-c x.json`.
import { isIP } from 'node:net';

export interface AdsBootstrapOptions {
  nodeId: string;
  nodeCluster: string;
  /** Control-plane xDS address: an IP (STATIC cluster) or a DNS name (STRICT_DNS). */
  adsHost: string;
  adsPort: number;
  adminPort: number;
  /** Delta xDS (DELTA_GRPC) instead of state-of-the-world (GRPC). */
  delta?: boolean;
  /** Admin listen address; loopback by default so the admin API is never exposed. */
  adminHost?: string;
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type EnvoyBootstrap = { [key: string]: JsonValue };

export const XDS_CLUSTER = 'sluice_xds';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

function socketAddress(address: string, port: number): JsonValue {
  return { socket_address: { address, port_value: port } };
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
          type: isIP(opts.adsHost) ? 'STATIC' : 'STRICT_DNS',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(opts.adsHost, opts.adsPort) } }] }],
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
  };
}
