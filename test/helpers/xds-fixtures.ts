// Hand-built Envoy resources for tests of the xDS server itself, independent of
// translate/: a listener, a route table and EDS clusters on loopback.
import { createHash } from 'node:crypto';
import {
  encode, packAny, typeUrl,
  type Cluster, type ClusterLoadAssignment, type HttpConnectionManager, type Listener, type MessageName, type RouteConfiguration,
} from '../../control-plane/src/proto/codec.ts';
import type { XdsResource } from '../../control-plane/src/xds/resources.ts';

const viaAds = { ads: {}, resource_api_version: 'V3' } as const;

export function resource<N extends MessageName>(name: string, type: N, message: Parameters<typeof encode<N>>[1]): XdsResource {
  const value = encode(type, message);
  return { typeUrl: typeUrl(type), name, version: createHash('sha256').update(value).digest('hex').slice(0, 16), value };
}

export interface FixtureRoute {
  prefix: string;
  /** One cluster, or weighted clusters. */
  cluster?: string;
  weighted?: Array<{ cluster: string; weight: number }>;
}

export interface FixtureConfig {
  listenerPort: number;
  routes: FixtureRoute[];
  clusters: Array<{ name: string; port: number }>;
  /** Tag sent back as `x-config` on every response, to see which version served. */
  tag?: string;
}

export function fixtureResources(config: FixtureConfig): XdsResource[] {
  const hcm: HttpConnectionManager = {
    stat_prefix: 'fixture',
    rds: { route_config_name: 'fixture-routes', config_source: viaAds },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}) }],
  };
  const listener: Listener = {
    name: 'fixture-listener',
    address: { socket_address: { address: '127.0.0.1', port_value: config.listenerPort } },
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', hcm) }] }],
  };
  const routes: RouteConfiguration = {
    name: 'fixture-routes',
    virtual_hosts: [{
      name: 'all',
      domains: ['*'],
      routes: config.routes.map((r) => ({
        match: { prefix: r.prefix },
        route: r.weighted
          ? { weighted_clusters: { clusters: r.weighted.map((w) => ({ name: w.cluster, weight: { value: w.weight } })) } }
          : { cluster: r.cluster },
      })),
      response_headers_to_add: config.tag
        ? [{ header: { key: 'x-config', value: config.tag }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' as const }]
        : [],
    }],
  };
  const out: XdsResource[] = [
    resource('fixture-listener', 'envoy.config.listener.v3.Listener', listener),
    resource('fixture-routes', 'envoy.config.route.v3.RouteConfiguration', routes),
  ];
  for (const c of config.clusters) {
    const cluster: Cluster = { name: c.name, type: 'EDS', connect_timeout: { seconds: 1 }, eds_cluster_config: { eds_config: viaAds } };
    const cla: ClusterLoadAssignment = {
      cluster_name: c.name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: c.port } } } }] }],
    };
    out.push(resource(c.name, 'envoy.config.cluster.v3.Cluster', cluster));
    out.push(resource(c.name, 'envoy.config.endpoint.v3.ClusterLoadAssignment', cla));
  }
  return out;
}
