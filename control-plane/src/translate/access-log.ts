// The gateway listener's access log: one JSON object per request, on stdout or
// in a file, with a fixed, documented field set (ACCESS_LOG_FIELDS). Values are
// Envoy command operators; Envoy writes numbers as numbers and a missing value
// (no upstream, no consumer, no traceparent) as null.
//
// Never logged: the query string (it carries API keys and tokens often enough:
// %PATH(NQ)% drops it), and any request header but x-request-id and
// traceparent (Authorization, cookies and API-key headers stay out).
import { AUTHZ_METADATA_CONSUMER, AUTHZ_METADATA_NAMESPACE } from '../model/contract.ts';
import type { AccessLogOptions } from './options.ts';
import { typed } from './util.ts';

/** Envoy's access-log entry (envoy.config.accesslog.v3.AccessLog) as HttpConnectionManager.access_log takes it. */
export interface AccessLogEntry {
  name: string;
  typed_config: { type_url: string; value: Uint8Array };
}

/**
 * The fields of every line, in the order documented for operators. Durations are
 * milliseconds; `upstream_service_time_ms` is the upstream's own time as Envoy
 * measured it (x-envoy-upstream-service-time), null for direct responses.
 */
export const ACCESS_LOG_FIELDS = {
  /** Request start, RFC 3339 with milliseconds, UTC (Envoy's default START_TIME format). */
  start_time: '%START_TIME%',
  method: '%REQ(:METHOD)%',
  /** The path the client asked for (before any rewrite), without the query string. */
  path: '%PATH(NQ)%',
  protocol: '%PROTOCOL%',
  status: '%RESPONSE_CODE%',
  /** Envoy's response flags (UH no healthy upstream, UF upstream connect failure, ...); "-" when none. */
  response_flags: '%RESPONSE_FLAGS%',
  duration_ms: '%DURATION%',
  upstream_service_time_ms: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  /** The Sluice route name. */
  route: '%ROUTE_NAME%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  upstream_host: '%UPSTREAM_HOST%',
  /** The authenticated consumer, as ext_authz reported it in dynamic metadata; null when anonymous. */
  consumer: `%DYNAMIC_METADATA(${AUTHZ_METADATA_NAMESPACE}:${AUTHZ_METADATA_CONSUMER})%`,
  client_address: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
  request_id: '%REQ(X-REQUEST-ID)%',
  traceparent: '%REQ(TRACEPARENT)%',
} as const;

export type AccessLogField = keyof typeof ACCESS_LOG_FIELDS;

/** The listener's access_log list: empty without options, else one logger writing JSON lines. */
export function accessLogs(options: AccessLogOptions | undefined): AccessLogEntry[] {
  if (!options) return [];
  const log_format = { json_format: jsonFormat() };
  if (options.to === 'stdout') {
    return [{ name: 'envoy.access_loggers.stdout', typed_config: typed('envoy.extensions.access_loggers.stream.v3.StdoutAccessLog', { log_format }) }];
  }
  return [
    {
      name: 'envoy.access_loggers.file',
      typed_config: typed('envoy.extensions.access_loggers.file.v3.FileAccessLog', { path: options.path, log_format }),
    },
  ];
}

/** google.protobuf.Struct of the fields (a map: Envoy writes the keys sorted, whatever the order here). */
function jsonFormat(): { fields: Record<string, { stringValue: string }> } {
  const fields: Record<string, { stringValue: string }> = {};
  for (const [key, command] of Object.entries(ACCESS_LOG_FIELDS)) fields[key] = { stringValue: command };
  return { fields };
}
