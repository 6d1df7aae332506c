// Trace context on the gateway listener. Envoy has no tracer-less way to create
// a W3C traceparent, so the OpenTelemetry tracer is always configured: it
// continues a client's trace (same trace id, Envoy's span as the new parent id,
// the client's sampled flag kept) or starts one, and sends traceparent upstream.
// With no collector configured (the default) it exports nothing: the tracer is
// there for the header. x-request-id is generated (or replaced: use_remote_address
// makes every client external) by the HCM and echoed in the response.
import type { HttpConnectionManager } from '../proto/codec.ts';
import type { TracingOptions } from './options.ts';
import { duration, typed } from './util.ts';

/** service.name on exported spans. */
export const TRACE_SERVICE_NAME = 'sluice-gateway';

/** The HCM fields for request ids and trace context. */
export function traceContext(options: TracingOptions | undefined): HttpConnectionManager {
  const collector = options?.otlpCollector;
  return {
    generate_request_id: { value: true },
    always_set_request_id_in_response: true,
    tracing: {
      random_sampling: { value: options?.samplingPercent ?? 100 },
      provider: {
        name: 'envoy.tracers.opentelemetry',
        typed_config: typed('envoy.config.trace.v3.OpenTelemetryConfig', {
          service_name: TRACE_SERVICE_NAME,
          ...(collector
            ? { grpc_service: { envoy_grpc: { cluster_name: collector.clusterName }, timeout: duration(1_000) } }
            : {}),
        }),
      },
    },
  };
}
