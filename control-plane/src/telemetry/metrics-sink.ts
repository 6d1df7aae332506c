// envoy.service.metrics.v3.MetricsService/StreamMetrics: each Envoy's stats
// sink streams its stats here (client streaming; one message per flush). The
// service only decodes and hands each flush to a FleetWindow; it answers
// nothing until the stream ends (the response message is empty).
import type * as grpc from '@grpc/grpc-js';
import { DECODE_OPTIONS } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';

/** io.prometheus.client types as decoded (64-bit counts as strings, enums as names). */
export interface PromLabel {
  name?: string;
  value?: string;
}

export interface PromBucket {
  cumulative_count?: string;
  upper_bound?: number;
}

export interface PromMetric {
  label?: PromLabel[];
  counter?: { value?: number };
  gauge?: { value?: number };
  histogram?: { sample_count?: string; sample_sum?: number; bucket?: PromBucket[] };
}

export interface PromFamily {
  name?: string;
  type?: string;
  metric?: PromMetric[];
}

export interface StreamMetricsMessage {
  identifier?: { node?: { id?: string; cluster?: string } };
  envoy_metrics?: PromFamily[];
}

/** What the sink feeds: one Envoy's flush (the node id comes on the stream's first message). */
export interface MetricsIngest {
  ingest(nodeId: string, families: readonly PromFamily[]): void;
  /** The node's stream ended: forget its baselines (a new stream may come from a restarted Envoy). */
  nodeGone(nodeId: string): void;
}

const REQUEST = 'envoy.service.metrics.v3.StreamMetricsMessage';
const RESPONSE = 'envoy.service.metrics.v3.StreamMetricsResponse';

function metricsServiceDefinition(): grpc.ServiceDefinition {
  const request = messageType(REQUEST);
  const response = messageType(RESPONSE);
  return {
    StreamMetrics: {
      path: '/envoy.service.metrics.v3.MetricsService/StreamMetrics',
      requestStream: true,
      responseStream: false,
      requestSerialize: (message: StreamMetricsMessage) => Buffer.from(request.encode(request.fromObject(message as Record<string, unknown>)).finish()),
      requestDeserialize: (bytes: Buffer): StreamMetricsMessage => request.toObject(request.decode(bytes), DECODE_OPTIONS) as StreamMetricsMessage,
      responseSerialize: (message: object) => Buffer.from(response.encode(response.fromObject(message as Record<string, unknown>)).finish()),
      responseDeserialize: (bytes: Buffer): object => response.toObject(response.decode(bytes)),
    },
  };
}

/** The gRPC service for AdsServer's `services` option. */
export function metricsService(ingest: MetricsIngest): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const StreamMetrics = (call: grpc.ServerReadableStream<StreamMetricsMessage, object>, callback: grpc.sendUnaryData<object>) => {
    let nodeId: string | undefined;
    call.on('data', (message: StreamMetricsMessage) => {
      // Envoy sends its identifier on the first message of a stream only.
      nodeId ??= message.identifier?.node?.id;
      if (nodeId !== undefined && message.envoy_metrics) ingest.ingest(nodeId, message.envoy_metrics);
    });
    const finish = () => {
      if (nodeId !== undefined) ingest.nodeGone(nodeId);
      nodeId = undefined;
    };
    call.on('end', () => {
      finish();
      callback(null, {});
    });
    call.on('error', finish);
    call.on('cancelled', finish);
  };
  return { definition: metricsServiceDefinition(), implementation: { StreamMetrics } };
}
