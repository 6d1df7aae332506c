// envoy.service.metrics.v3.MetricsService/StreamMetrics: each Envoy's stats
// sink streams its stats here (client streaming; one message per flush). The
// service only decodes and hands each flush to a FleetWindow; it answers
// nothing until the stream ends (the response message is empty).
//
// A flush carries every stat the Envoy has (thousands of families, tens of
// thousands of series with per-route stats), and the window reads five
// families. So the message is walked on the wire and only the families the
// ingest names are decoded; the rest are skipped without being parsed.
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
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
  /** The families it reads; the others are not decoded. Absent: all of them. */
  readonly families?: ReadonlySet<string>;
  ingest(nodeId: string, families: readonly PromFamily[]): void;
  /** The node's stream ended: forget its baselines (a new stream may come from a restarted Envoy). */
  nodeGone(nodeId: string): void;
}

const REQUEST = 'envoy.service.metrics.v3.StreamMetricsMessage';
const RESPONSE = 'envoy.service.metrics.v3.StreamMetricsResponse';
/** StreamMetricsMessage.identifier and .envoy_metrics; MetricFamily.name. */
const IDENTIFIER_FIELD = 1;
const METRICS_FIELD = 2;
const FAMILY_NAME_FIELD = 1;
const LENGTH_DELIMITED = 2;

/**
 * Decodes a StreamMetricsMessage keeping only the families named in `wanted`
 * (all of them when absent): equal to the full decode with the other families
 * filtered out (test/unit/telemetry-metrics-sink.test.ts). Malformed input throws,
 * as the full decoder does.
 */
export function decodeMetricsMessage(bytes: Uint8Array, wanted?: ReadonlySet<string>): StreamMetricsMessage {
  const identifierType = messageType(`${REQUEST}.Identifier`);
  const familyType = messageType('io.prometheus.client.MetricFamily');
  const reader = protobuf.Reader.create(bytes);
  const message: StreamMetricsMessage = {};
  const families: PromFamily[] = [];
  let sawFamilies = false; // a flush whose families were all skipped is still a flush
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    if (field === IDENTIFIER_FIELD && (tag & 7) === LENGTH_DELIMITED) {
      message.identifier = identifierType.toObject(identifierType.decode(reader.bytes()), DECODE_OPTIONS) as StreamMetricsMessage['identifier'];
    } else if (field === METRICS_FIELD && (tag & 7) === LENGTH_DELIMITED) {
      const family = reader.bytes();
      sawFamilies = true;
      if (wanted && !wanted.has(familyName(family) ?? '')) continue;
      families.push(familyType.toObject(familyType.decode(family), DECODE_OPTIONS) as PromFamily);
    } else {
      reader.skipType(tag & 7);
    }
  }
  if (sawFamilies) message.envoy_metrics = families;
  return message;
}

/** A MetricFamily's name, read without decoding the rest (the last one wins, as in a full decode). */
function familyName(bytes: Uint8Array): string | undefined {
  const reader = protobuf.Reader.create(bytes);
  let name: string | undefined;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === FAMILY_NAME_FIELD && (tag & 7) === LENGTH_DELIMITED) name = reader.string();
    else reader.skipType(tag & 7);
  }
  return name;
}

function metricsServiceDefinition(wanted: ReadonlySet<string> | undefined): grpc.ServiceDefinition {
  const request = messageType(REQUEST);
  const response = messageType(RESPONSE);
  return {
    StreamMetrics: {
      path: '/envoy.service.metrics.v3.MetricsService/StreamMetrics',
      requestStream: true,
      responseStream: false,
      requestSerialize: (message: StreamMetricsMessage) => Buffer.from(request.encode(request.fromObject(message as Record<string, unknown>)).finish()),
      requestDeserialize: (bytes: Buffer): StreamMetricsMessage => decodeMetricsMessage(bytes, wanted),
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
  return { definition: metricsServiceDefinition(ingest.families), implementation: { StreamMetrics } };
}
