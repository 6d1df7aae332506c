// Typed encode/decode and google.protobuf.Any packing for the Envoy messages
// Sluice moves. Input objects use Envoy's snake_case field names; the types come
// from declarations generated out of the same .proto files (see
// scripts/gen-proto-types.sh).
import protobuf, { type IConversionOptions } from 'protobufjs';
import { messageType } from './envoy.ts';
import type { Listener } from './generated/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration } from './generated/envoy/config/route/v3/RouteConfiguration.ts';
import type { Cluster } from './generated/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment } from './generated/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { DiscoveryRequest } from './generated/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { DiscoveryResponse } from './generated/envoy/service/discovery/v3/DiscoveryResponse.ts';
import type { DeltaDiscoveryRequest } from './generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse } from './generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { HttpConnectionManager } from './generated/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { Router } from './generated/envoy/extensions/filters/http/router/v3/Router.ts';
import type { Cors } from './generated/envoy/extensions/filters/http/cors/v3/Cors.ts';
import type { CorsPolicy } from './generated/envoy/extensions/filters/http/cors/v3/CorsPolicy.ts';
import type { ExtAuthz } from './generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';
import type { ExtAuthzPerRoute } from './generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthzPerRoute.ts';
import type { RateLimit } from './generated/envoy/extensions/filters/http/ratelimit/v3/RateLimit.ts';
import type { RateLimitPerRoute } from './generated/envoy/extensions/filters/http/ratelimit/v3/RateLimitPerRoute.ts';
import type { FilterConfig } from './generated/envoy/config/route/v3/FilterConfig.ts';
import type { RateLimitConfig as RlsConfig } from './generated/ratelimit/config/ratelimit/v3/RateLimitConfig.ts';
import type { LocalRateLimit } from './generated/envoy/extensions/filters/http/local_ratelimit/v3/LocalRateLimit.ts';
import type { JwtAuthentication } from './generated/envoy/extensions/filters/http/jwt_authn/v3/JwtAuthentication.ts';
import type { UpstreamTlsContext } from './generated/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import type { HttpProtocolOptions } from './generated/envoy/extensions/upstreams/http/v3/HttpProtocolOptions.ts';
import type { CheckRequest } from './generated/envoy/service/auth/v3/CheckRequest.ts';
import type { CheckResponse } from './generated/envoy/service/auth/v3/CheckResponse.ts';
import type { RateLimitRequest } from './generated/envoy/service/ratelimit/v3/RateLimitRequest.ts';
import type { RateLimitResponse } from './generated/envoy/service/ratelimit/v3/RateLimitResponse.ts';
import type { Any } from './generated/google/protobuf/Any.ts';
import type { HeaderMutation } from './generated/envoy/extensions/filters/http/header_mutation/v3/HeaderMutation.ts';
import type { Route } from './generated/envoy/config/route/v3/Route.ts';
import type { VirtualHost } from './generated/envoy/config/route/v3/VirtualHost.ts';
import type { FileAccessLog } from './generated/envoy/extensions/access_loggers/file/v3/FileAccessLog.ts';
import type { StdoutAccessLog } from './generated/envoy/extensions/access_loggers/stream/v3/StdoutAccessLog.ts';
import type { OpenTelemetryConfig } from './generated/envoy/config/trace/v3/OpenTelemetryConfig.ts';

export type {
  Listener, RouteConfiguration, Cluster, ClusterLoadAssignment,
  DiscoveryRequest, DiscoveryResponse, DeltaDiscoveryRequest, DeltaDiscoveryResponse,
  HttpConnectionManager, Router, Cors, CorsPolicy, ExtAuthz, ExtAuthzPerRoute, RateLimit,
  LocalRateLimit, JwtAuthentication, UpstreamTlsContext, HttpProtocolOptions,
  CheckRequest, CheckResponse, RateLimitRequest, RateLimitResponse, Any, HeaderMutation,
  Route, VirtualHost, FileAccessLog, StdoutAccessLog, OpenTelemetryConfig, RlsConfig,
};

/** Message full name -> its TypeScript input type. The one list of what Sluice encodes. */
export interface EnvoyMessages {
  'envoy.config.listener.v3.Listener': Listener;
  'envoy.config.route.v3.RouteConfiguration': RouteConfiguration;
  'envoy.config.cluster.v3.Cluster': Cluster;
  'envoy.config.endpoint.v3.ClusterLoadAssignment': ClusterLoadAssignment;
  'envoy.service.discovery.v3.DiscoveryRequest': DiscoveryRequest;
  'envoy.service.discovery.v3.DiscoveryResponse': DiscoveryResponse;
  'envoy.service.discovery.v3.DeltaDiscoveryRequest': DeltaDiscoveryRequest;
  'envoy.service.discovery.v3.DeltaDiscoveryResponse': DeltaDiscoveryResponse;
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager': HttpConnectionManager;
  'envoy.extensions.filters.http.router.v3.Router': Router;
  'envoy.extensions.filters.http.cors.v3.Cors': Cors;
  'envoy.extensions.filters.http.cors.v3.CorsPolicy': CorsPolicy;
  'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz': ExtAuthz;
  'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute': ExtAuthzPerRoute;
  'envoy.extensions.filters.http.ratelimit.v3.RateLimit': RateLimit;
  'envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute': RateLimitPerRoute;
  'envoy.config.route.v3.FilterConfig': FilterConfig;
  /** Sluice's own definition (proto/ratelimit/...): envoyproxy/ratelimit's xDS config resource. */
  'ratelimit.config.ratelimit.v3.RateLimitConfig': RlsConfig;
  'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit': LocalRateLimit;
  'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication': JwtAuthentication;
  'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext': UpstreamTlsContext;
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': HttpProtocolOptions;
  'envoy.service.auth.v3.CheckRequest': CheckRequest;
  'envoy.service.auth.v3.CheckResponse': CheckResponse;
  'envoy.service.ratelimit.v3.RateLimitRequest': RateLimitRequest;
  'envoy.service.ratelimit.v3.RateLimitResponse': RateLimitResponse;
  'envoy.extensions.filters.http.header_mutation.v3.HeaderMutation': HeaderMutation;
  'envoy.config.route.v3.Route': Route;
  'envoy.config.route.v3.VirtualHost': VirtualHost;
  'envoy.extensions.access_loggers.file.v3.FileAccessLog': FileAccessLog;
  'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog': StdoutAccessLog;
  'envoy.config.trace.v3.OpenTelemetryConfig': OpenTelemetryConfig;
}

export type MessageName = keyof EnvoyMessages;

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

export function typeUrl(name: MessageName): string {
  return TYPE_URL_PREFIX + name;
}

/** How decoded messages look: snake_case, enums as names, 64-bit ints as strings, bytes as Buffer. */
export const DECODE_OPTIONS: IConversionOptions = {
  enums: String,
  longs: String,
  bytes: Buffer,
  defaults: false,
  arrays: false,
  objects: false,
  oneofs: false,
};

/**
 * Encodes a message, refusing field names the schema does not know (protobufjs
 * would silently drop them, turning a typo into a config Envoy never sees).
 */
export function encode<N extends MessageName>(name: N, message: EnvoyMessages[N]): Uint8Array {
  const type = messageType(name);
  assertKnownFields(type, message, name);
  return type.encode(type.fromObject(message as Record<string, unknown>)).finish();
}

interface FieldInfo {
  /** The nested message type to check, or undefined for scalars, enums and Any. */
  child?: protobuf.Type;
  repeated: boolean;
  map: boolean;
}

// Per-type field table: resolving field types through protobufjs getters on
// every encode was the bulk of the check's cost.
const fieldTables = new WeakMap<protobuf.Type, Map<string, FieldInfo>>();

function fieldTable(type: protobuf.Type): Map<string, FieldInfo> {
  let table = fieldTables.get(type);
  if (table) return table;
  table = new Map();
  for (const [name, field] of Object.entries(type.fields)) {
    const resolved = field.resolvedType;
    const child = resolved instanceof protobuf.Type && resolved.fullName !== '.google.protobuf.Any' ? resolved : undefined;
    table.set(name, { ...(child ? { child } : {}), repeated: field.repeated, map: field.map });
  }
  for (const name of Object.keys(type.oneofs ?? {})) {
    // proto-loader's virtual "which oneof" key: allowed, nothing to check.
    if (!table.has(name)) table.set(name, { repeated: false, map: false });
  }
  fieldTables.set(type, table);
  return table;
}

function assertKnownFields(type: protobuf.Type, message: unknown, where: string): void {
  if (message === null || typeof message !== 'object' || ArrayBuffer.isView(message)) return;
  const table = fieldTable(type);
  for (const key in message) {
    const value = (message as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const field = table.get(key);
    if (!field) throw new Error(`${where}.${key}: no such field in ${type.fullName}`);
    const child = field.child;
    if (!child) continue;
    if (field.repeated && Array.isArray(value)) {
      value.forEach((item, i) => assertKnownFields(child, item, `${where}.${key}[${i}]`));
    } else if (field.map && typeof value === 'object' && value !== null) {
      for (const [mapKey, item] of Object.entries(value)) assertKnownFields(child, item, `${where}.${key}.${mapKey}`);
    } else {
      assertKnownFields(child, value, `${where}.${key}`);
    }
  }
}

export function decode<N extends MessageName>(name: N, bytes: Uint8Array): Record<string, unknown> {
  const type = messageType(name);
  return type.toObject(type.decode(bytes), DECODE_OPTIONS);
}

/** Packs a message into google.protobuf.Any. */
export function packAny<N extends MessageName>(name: N, message: EnvoyMessages[N]): Any & { type_url: string; value: Uint8Array } {
  return { type_url: typeUrl(name), value: encode(name, message) };
}

/** Unpacks google.protobuf.Any whose type_url names one of our messages. */
export function unpackAny(any: { type_url?: string; value?: Uint8Array | Buffer | string }): Record<string, unknown> {
  const url = any.type_url ?? '';
  if (!url.startsWith(TYPE_URL_PREFIX)) throw new Error(`unsupported Any type_url: ${url}`);
  const name = url.slice(TYPE_URL_PREFIX.length);
  const type = messageType(name);
  const value = typeof any.value === 'string' ? Buffer.from(any.value, 'base64') : (any.value ?? new Uint8Array());
  return type.toObject(type.decode(value), DECODE_OPTIONS);
}
