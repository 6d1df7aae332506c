// Every message Sluice moves survives encode -> decode unchanged. Inputs are
// written the way decode returns them: 64-bit ints as strings, enums as names,
// and no proto3 default values (0, '', false, first enum value), which are not
// on the wire and so do not come back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decode, encode, packAny, unpackAny,
  type Cluster, type ClusterLoadAssignment, type EnvoyMessages, type HttpConnectionManager, type Listener,
  type MessageName, type RouteConfiguration,
} from '../../control-plane/src/proto/codec.ts';

/** Bytes (Buffer or Uint8Array) compare by content; undefined keys are dropped. */
function normalise(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, normalise(v)]),
    );
  }
  return value;
}

function assertRoundTrip<N extends MessageName>(name: N, message: EnvoyMessages[N]): void {
  const bytes = encode(name, message);
  assert.ok(bytes.length > 0 || Object.keys(message as object).length === 0, `${name} encodes to something`);
  assert.deepStrictEqual(normalise(decode(name, bytes)), normalise(message));
}

const viaAds = { ads: {}, resource_api_version: 'V3' } as const;
// google.protobuf.Value comes from protobufjs's bundled well-known types, which
// are camelCase even with keepCase: `stringValue`, not `string_value`.
const struct = (fields: Record<string, string>) => ({
  fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { stringValue: v }])),
});
const grpcCluster = (cluster_name: string) => ({ envoy_grpc: { cluster_name }, timeout: { nanos: 250_000_000 } });

// ---- filters -------------------------------------------------------------

const corsPolicy: EnvoyMessages['envoy.extensions.filters.http.cors.v3.CorsPolicy'] = {
  allow_origin_string_match: [{ exact: 'https://app.example.com' }, { safe_regex: { regex: '^https://.*\\.example\\.org$' } }],
  allow_methods: 'GET, POST, PUT',
  allow_headers: 'authorization, content-type',
  expose_headers: 'x-request-id',
  max_age: '600',
  allow_credentials: { value: true },
  filter_enabled: { default_value: { numerator: 100 }, runtime_key: 'cors.enabled' },
};

const extAuthz: EnvoyMessages['envoy.extensions.filters.http.ext_authz.v3.ExtAuthz'] = {
  grpc_service: grpcCluster('sluice_authz'),
  transport_api_version: 'V3',
  with_request_body: { max_request_bytes: 8192, allow_partial_message: true },
  status_on_error: { code: 'ServiceUnavailable' },
  include_peer_certificate: true,
  allowed_headers: { patterns: [{ exact: 'authorization' }, { prefix: 'x-api-key' }] },
  metadata_context_namespaces: ['sluice'],
};

const rateLimit: EnvoyMessages['envoy.extensions.filters.http.ratelimit.v3.RateLimit'] = {
  domain: 'sluice',
  request_type: 'external',
  timeout: { nanos: 20_000_000 },
  failure_mode_deny: true,
  rate_limit_service: { grpc_service: grpcCluster('sluice_rls'), transport_api_version: 'V3' },
  enable_x_ratelimit_headers: 'DRAFT_VERSION_03',
};

const localRateLimit: EnvoyMessages['envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit'] = {
  stat_prefix: 'route_local_rl',
  status: { code: 'TooManyRequests' },
  token_bucket: { max_tokens: 100, tokens_per_fill: { value: 100 }, fill_interval: { seconds: '1' } },
  filter_enabled: { runtime_key: 'local_rl.enabled', default_value: { numerator: 100 } },
  filter_enforced: { runtime_key: 'local_rl.enforced', default_value: { numerator: 100 } },
  response_headers_to_add: [{ header: { key: 'x-local-rate-limit', value: 'true' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
};

const router: EnvoyMessages['envoy.extensions.filters.http.router.v3.Router'] = {
  dynamic_stats: { value: true },
  start_child_span: true,
  suppress_envoy_headers: true,
  strict_check_headers: ['x-envoy-upstream-rq-timeout-ms'],
};

const hcm: HttpConnectionManager = {
  stat_prefix: 'ingress_http',
  rds: { route_config_name: 'sluice-routes', config_source: viaAds },
  http_filters: [
    { name: 'envoy.filters.http.cors', typed_config: packAny('envoy.extensions.filters.http.cors.v3.Cors', {}) },
    { name: 'envoy.filters.http.ext_authz', typed_config: packAny('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', extAuthz) },
    { name: 'envoy.filters.http.local_ratelimit', typed_config: packAny('envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', localRateLimit) },
    { name: 'envoy.filters.http.ratelimit', typed_config: packAny('envoy.extensions.filters.http.ratelimit.v3.RateLimit', rateLimit) },
    { name: 'envoy.filters.http.router', typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', router) },
  ],
  use_remote_address: { value: true },
  xff_num_trusted_hops: 1,
  common_http_protocol_options: { idle_timeout: { seconds: '300' }, headers_with_underscores_action: 'REJECT_REQUEST' },
  stream_idle_timeout: { seconds: '60' },
  request_timeout: { seconds: '30', nanos: 500_000_000 },
  normalize_path: { value: true },
  merge_slashes: true,
  path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
};

// ---- resources -----------------------------------------------------------

const listener: Listener = {
  name: 'ingress_http',
  address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
  per_connection_buffer_limit_bytes: { value: 32768 },
  filter_chains: [{
    filters: [{
      name: 'envoy.filters.network.http_connection_manager',
      typed_config: packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', hcm),
    }],
  }],
  metadata: { filter_metadata: { sluice: struct({ revision: '42' }) } },
};

const routeConfiguration: RouteConfiguration = {
  name: 'sluice-routes',
  request_headers_to_remove: ['x-sluice-consumer', 'x-user-id', 'x-consumer-id'],
  virtual_hosts: [{
    name: 'api',
    domains: ['api.example.com', 'api.example.com:*'],
    typed_per_filter_config: { 'envoy.filters.http.cors': packAny('envoy.extensions.filters.http.cors.v3.CorsPolicy', corsPolicy) },
    routes: [
      {
        name: 'orders-canary',
        match: { prefix: '/orders', headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
        route: {
          weighted_clusters: { clusters: [{ name: 'orders-v1', weight: { value: 90 } }, { name: 'orders-v2', weight: { value: 10 } }] },
          timeout: { seconds: '15' },
          retry_policy: { retry_on: '5xx,reset', num_retries: { value: 2 }, per_try_timeout: { seconds: '5' } },
          request_mirror_policies: [{ cluster: 'orders-shadow', runtime_fraction: { default_value: { numerator: 5 } } }],
          rate_limits: [{ actions: [{ remote_address: {} }, { generic_key: { descriptor_value: 'orders' } }] }],
        },
        typed_per_filter_config: {
          'envoy.filters.http.ext_authz': packAny('envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', {
            check_settings: { context_extensions: { route_id: 'orders-canary' } },
          }),
        },
        metadata: { filter_metadata: { sluice: struct({ route_id: 'orders-canary' }) } },
      },
      {
        match: { safe_regex: { regex: '^/users/[0-9]+$' } },
        route: { cluster: 'users', prefix_rewrite: '/v2/users', auto_host_rewrite: { value: true } },
        response_headers_to_add: [{ header: { key: 'x-served-by', value: 'sluice' } }],
      },
      { match: { path: '/old' }, redirect: { path_redirect: '/new', response_code: 'PERMANENT_REDIRECT' } },
      { match: { prefix: '/' }, direct_response: { status: 404, body: { inline_string: '{"title":"no route"}' } } },
    ],
  }],
};

const cluster: Cluster = {
  name: 'orders-v1',
  type: 'EDS',
  eds_cluster_config: { eds_config: viaAds, service_name: 'orders-v1' },
  connect_timeout: { seconds: '2', nanos: 500_000_000 },
  lb_policy: 'LEAST_REQUEST',
  circuit_breakers: {
    thresholds: [{ priority: 'HIGH', max_connections: { value: 1000 }, max_pending_requests: { value: 500 }, max_requests: { value: 2000 }, max_retries: { value: 3 } }],
  },
  outlier_detection: { consecutive_5xx: { value: 5 }, interval: { seconds: '10' }, base_ejection_time: { seconds: '30' }, max_ejection_percent: { value: 50 } },
  health_checks: [{
    timeout: { seconds: '1' },
    interval: { seconds: '5' },
    unhealthy_threshold: { value: 3 },
    healthy_threshold: { value: 2 },
    http_health_check: { path: '/healthz', host: 'orders.internal' },
  }],
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': packAny('envoy.extensions.upstreams.http.v3.HttpProtocolOptions', {
      explicit_http_config: { http2_protocol_options: { max_concurrent_streams: { value: 100 } } },
    }),
  },
  transport_socket: {
    name: 'envoy.transport_sockets.tls',
    typed_config: packAny('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      sni: 'orders.internal',
      common_tls_context: { alpn_protocols: ['h2', 'http/1.1'] },
    }),
  },
  per_connection_buffer_limit_bytes: { value: 65536 },
};

const clusterLoadAssignment: ClusterLoadAssignment = {
  cluster_name: 'orders-v1',
  endpoints: [
    {
      locality: { region: 'eu-west-1', zone: 'eu-west-1a' },
      lb_endpoints: [
        {
          endpoint: { address: { socket_address: { address: '10.0.1.7', port_value: 8080 } }, hostname: 'orders-1', health_check_config: { port_value: 9090 } },
          health_status: 'HEALTHY',
          load_balancing_weight: { value: 3 },
          metadata: { filter_metadata: { 'envoy.lb': struct({ version: 'v1' }) } },
        },
        { endpoint: { address: { socket_address: { address: '10.0.1.8', port_value: 8080 } } }, load_balancing_weight: { value: 1 } },
      ],
      load_balancing_weight: { value: 1 },
    },
    { priority: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.2.9', port_value: 8080 } } } }] },
  ],
  policy: { overprovisioning_factor: { value: 140 }, endpoint_stale_after: { seconds: '60' } },
};

const node = {
  id: 'envoy-7f9c',
  cluster: 'edge',
  user_agent_name: 'envoy',
  user_agent_version: '1.38.3',
  locality: { region: 'eu-west-1', zone: 'eu-west-1a' },
  metadata: struct({ pod: 'edge-7f9c' }),
  client_features: ['envoy.lb.does_not_support_overprovisioning'],
};

// ---- the round trips -----------------------------------------------------

test('xDS resources round-trip', () => {
  assertRoundTrip('envoy.config.listener.v3.Listener', listener);
  assertRoundTrip('envoy.config.route.v3.RouteConfiguration', routeConfiguration);
  assertRoundTrip('envoy.config.cluster.v3.Cluster', cluster);
  assertRoundTrip('envoy.config.endpoint.v3.ClusterLoadAssignment', clusterLoadAssignment);
});

test('HTTP filter configs round-trip', () => {
  assertRoundTrip('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', hcm);
  assertRoundTrip('envoy.extensions.filters.http.router.v3.Router', router);
  assertRoundTrip('envoy.extensions.filters.http.cors.v3.Cors', {}); // the filter itself has no fields; policy is per route
  assertRoundTrip('envoy.extensions.filters.http.cors.v3.CorsPolicy', corsPolicy);
  assertRoundTrip('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', extAuthz);
  assertRoundTrip('envoy.extensions.filters.http.ratelimit.v3.RateLimit', rateLimit);
  assertRoundTrip('envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', localRateLimit);
});

test('state-of-the-world discovery messages round-trip', () => {
  assertRoundTrip('envoy.service.discovery.v3.DiscoveryRequest', {
    version_info: 'rev-41',
    node,
    resource_names: ['orders-v1', 'users'],
    type_url: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    response_nonce: 'n-17',
    error_detail: { code: 3, message: 'Proto constraint validation failed: weight must be > 0' },
  });
  assertRoundTrip('envoy.service.discovery.v3.DiscoveryResponse', {
    version_info: 'rev-42',
    resources: [packAny('envoy.config.cluster.v3.Cluster', cluster), packAny('envoy.config.cluster.v3.Cluster', { ...cluster, name: 'users' })],
    type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    nonce: 'n-18',
    control_plane: { identifier: 'sluice-cp-0' },
  });
});

test('delta discovery messages round-trip', () => {
  assertRoundTrip('envoy.service.discovery.v3.DeltaDiscoveryRequest', {
    node,
    type_url: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
    resource_names_subscribe: ['sluice-routes'],
    resource_names_unsubscribe: ['legacy-routes'],
    initial_resource_versions: { 'sluice-routes': 'a1b2c3' },
    response_nonce: 'd-3',
    error_detail: { code: 3, message: 'route references unknown cluster' },
  });
  assertRoundTrip('envoy.service.discovery.v3.DeltaDiscoveryResponse', {
    system_version_info: 'rev-42',
    resources: [{
      name: 'sluice-routes',
      version: 'a1b2c4',
      resource: packAny('envoy.config.route.v3.RouteConfiguration', routeConfiguration),
      ttl: { seconds: '30' },
    }],
    type_url: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
    removed_resources: ['legacy-routes'],
    nonce: 'd-4',
    control_plane: { identifier: 'sluice-cp-0' },
  });
});

test('ext_authz check messages round-trip', () => {
  assertRoundTrip('envoy.service.auth.v3.CheckRequest', {
    attributes: {
      source: { address: { socket_address: { address: '203.0.113.9', port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.0.5', port_value: 8080 } } },
      request: {
        time: { seconds: '1700000000', nanos: 123_000_000 },
        http: {
          id: '9f1c2e',
          method: 'POST',
          headers: { ':path': '/orders', authorization: 'Bearer eyJ.test.sig', 'content-type': 'application/json' },
          path: '/orders',
          host: 'api.example.com',
          scheme: 'https',
          protocol: 'HTTP/1.1',
          size: '17',
          body: '{"item":"apple"}',
        },
      },
      context_extensions: { route_id: 'orders-canary' },
    },
  });
  assertRoundTrip('envoy.service.auth.v3.CheckResponse', {
    status: {}, // OK: code 0 is the default and is not on the wire
    ok_response: {
      headers: [{ header: { key: 'x-consumer-id', value: 'c-17' }, append: { value: true } }],
      headers_to_remove: ['authorization'],
      response_headers_to_add: [{ header: { key: 'x-ratelimit-tier', value: 'gold' } }],
    },
    dynamic_metadata: struct({ consumer: 'c-17' }),
  });
  assertRoundTrip('envoy.service.auth.v3.CheckResponse', {
    status: { code: 16, message: 'invalid api key' },
    denied_response: {
      status: { code: 'Unauthorized' },
      headers: [{ header: { key: 'content-type', value: 'application/problem+json' } }],
      body: '{"title":"Unauthorized"}',
    },
  });
});

test('rate-limit service messages round-trip', () => {
  assertRoundTrip('envoy.service.ratelimit.v3.RateLimitRequest', {
    domain: 'sluice',
    descriptors: [
      { entries: [{ key: 'remote_address', value: '203.0.113.9' }, { key: 'generic_key', value: 'orders' }] },
      { entries: [{ key: 'consumer', value: 'c-17' }], limit: { requests_per_unit: 10, unit: 'SECOND' } },
    ],
    hits_addend: 2,
  });
  assertRoundTrip('envoy.service.ratelimit.v3.RateLimitResponse', {
    overall_code: 'OVER_LIMIT',
    statuses: [
      { code: 'OK', current_limit: { name: 'per-ip', requests_per_unit: 100, unit: 'MINUTE' }, limit_remaining: 42, duration_until_reset: { seconds: '17' } },
      { code: 'OVER_LIMIT', current_limit: { requests_per_unit: 10, unit: 'SECOND' }, duration_until_reset: { nanos: 400_000_000 } },
    ],
    response_headers_to_add: [{ key: 'x-ratelimit-limit', value: '10' }],
    request_headers_to_add: [{ key: 'x-ratelimit-consumer', value: 'c-17' }],
    raw_body: Buffer.from('{"title":"Too Many Requests"}'),
  });
});

test('an Any packed inside a Listener unpacks to the same HttpConnectionManager', () => {
  const decoded = decode('envoy.config.listener.v3.Listener', encode('envoy.config.listener.v3.Listener', listener));
  const chains = decoded.filter_chains as Array<{ filters: Array<{ typed_config: { type_url: string; value: Buffer } }> }>;
  const any = chains[0]?.filters[0]?.typed_config;
  assert.ok(any);
  assert.equal(any.type_url, 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
  assert.deepStrictEqual(normalise(unpackAny(any)), normalise(hcm));
  // and one level further down: the router inside the HCM
  const filters = unpackAny(any).http_filters as Array<{ name: string; typed_config: { type_url: string; value: Buffer } }>;
  const routerAny = filters.find((f) => f.name === 'envoy.filters.http.router')?.typed_config;
  assert.ok(routerAny);
  assert.deepStrictEqual(normalise(unpackAny(routerAny)), normalise(router));
});

test('encode rejects unknown field names, also nested ones', () => {
  assert.throws(
    () => encode('envoy.config.cluster.v3.Cluster', { name: 'c', conect_timeout: { seconds: '1' } } as unknown as Cluster),
    /conect_timeout/,
  );
  const badRoute = { name: 'r', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefx: '/' } }] }] };
  assert.throws(
    () => encode('envoy.config.route.v3.RouteConfiguration', badRoute as unknown as RouteConfiguration),
    /virtual_hosts\[0\]\.routes\[0\]\.match\.prefx/,
  );
});
