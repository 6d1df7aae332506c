// The one HTTP listener: http_connection_manager with RDS over ADS, the filter
// chain, and the edge defaults (path handling, header rules, timeouts, limits).
import type { HttpConnectionManager, Listener } from '../proto/codec.ts';
import type { HttpFilter } from './filters.ts';
import { HCM_FILTER, listenerName, routeConfigName } from './names.ts';
import type { EdgeOptions } from './options.ts';
import { adsConfigSource, bool, duration, socketAddress, typed, uint32 } from './util.ts';

/**
 * The listener resource of the last translation and what it was built from:
 * the options object and the filter needs and stripped headers (as JSON). A
 * translation with the same three reuses it (TranslationCache).
 */
export interface ListenerMemo {
  options: object;
  key: string;
  resource: { typeUrl: string; name: string; version: string; value: Uint8Array };
}

/** `observability`: access log and trace-context fields (access-log.ts, tracing.ts) merged into the HCM. */
export function httpListener(address: string, port: number, httpFilters: HttpFilter[], edge: EdgeOptions, observability: HttpConnectionManager = {}): Listener {
  return {
    name: listenerName(port),
    address: socketAddress(address, port),
    per_connection_buffer_limit_bytes: uint32(edge.perConnectionBufferLimitBytes),
    filter_chains: [
      {
        filters: [
          {
            name: HCM_FILTER,
            typed_config: typed(
              'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              connectionManager(port, httpFilters, edge, observability),
            ),
          },
        ],
      },
    ],
  };
}

function connectionManager(port: number, httpFilters: HttpFilter[], edge: EdgeOptions, observability: HttpConnectionManager): HttpConnectionManager {
  return {
    stat_prefix: listenerName(port),
    codec_type: 'AUTO',
    rds: { route_config_name: routeConfigName(port), config_source: adsConfigSource() },
    http_filters: httpFilters,
    ...clientAddress(edge),
    ...pathHandling(),
    ...limits(edge),
    ...observability,
  };
}

/**
 * Sluice is the edge: the client address is the TCP peer, unless xffTrustedHops
 * proxies in front of it are trusted to say otherwise; a client-sent
 * X-Forwarded-For is appended to, never believed.
 */
function clientAddress(edge: EdgeOptions): HttpConnectionManager {
  return {
    use_remote_address: bool(true),
    xff_num_trusted_hops: edge.xffTrustedHops,
    // No client is "internal": Envoy trusts x-envoy-* request headers (retry and
    // timeout overrides, x-envoy-internal) from internal clients. Depending on a
    // runtime flag, unset means RFC 1918, and an empty list (tried with 1.38)
    // makes a loopback peer internal; so the one range is 255.255.255.255/32,
    // which no TCP peer can have: the set is explicitly empty.
    internal_address_config: { unix_sockets: false, cidr_ranges: [{ address_prefix: '255.255.255.255', prefix_len: uint32(32) }] },
  };
}

/**
 * Match, authorize and forward the path the upstream will see: /a/../b is /b,
 * //a is /a. Escaped slashes (%2F, %5C, either case) are refused with 400 rather
 * than unescaped: REJECT_REQUEST keeps one meaning per path (an upstream that
 * decodes %2F would otherwise see a different path than the route matched), costs
 * no redirect round trip, cannot loop, and treats every method the same (a redirect
 * turns a POST body into the client's problem). Clients with a real need for an
 * encoded slash in a path segment are rare at an API edge; they get a clear 400.
 */
function pathHandling(): HttpConnectionManager {
  return {
    normalize_path: bool(true),
    merge_slashes: true,
    path_with_escaped_slashes_action: 'REJECT_REQUEST',
  };
}

/** Timeouts and sizes from Envoy's edge guidance (see EdgeOptions). */
function limits(edge: EdgeOptions): HttpConnectionManager {
  return {
    request_headers_timeout: duration(edge.requestHeadersTimeoutMs),
    stream_idle_timeout: duration(edge.streamIdleTimeoutMs),
    request_timeout: duration(edge.requestTimeoutMs),
    max_request_headers_kb: uint32(edge.maxRequestHeadersKb),
    common_http_protocol_options: {
      idle_timeout: duration(edge.connectionIdleTimeoutMs),
      // x_user_id is x-user-id to many upstreams (CGI, some frameworks): an
      // underscore header could smuggle an identity past the strip filter, which
      // matches dashes. Rejected (400), not dropped, per the edge guidance: a
      // client sending one is either broken or probing, and should hear so.
      headers_with_underscores_action: 'REJECT_REQUEST',
    },
    http2_protocol_options: {
      max_concurrent_streams: uint32(edge.http2MaxConcurrentStreams),
      initial_stream_window_size: uint32(edge.http2InitialStreamWindowBytes),
      initial_connection_window_size: uint32(edge.http2InitialConnectionWindowBytes),
    },
  };
}
