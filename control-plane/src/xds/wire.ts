// gRPC method definitions for ADS, built by hand on the protobufjs codec so the
// server moves already-encoded resources without re-encoding them.
import type { MethodDefinition } from '@grpc/grpc-js';
import { DECODE_OPTIONS } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';

export interface WireNode {
  id?: string;
  cluster?: string;
}

export interface WireStatus {
  code?: number;
  message?: string;
}

/** The fields of a DiscoveryRequest the server reads. */
export interface SotwRequest {
  version_info?: string;
  node?: WireNode;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: WireStatus;
}

export interface SotwResponse {
  version_info: string;
  resources: Array<{ type_url: string; value: Uint8Array }>;
  type_url: string;
  nonce: string;
}

/** The fields of a DeltaDiscoveryRequest the server reads. */
export interface DeltaRequest {
  node?: WireNode;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: WireStatus;
}

export interface DeltaResponse {
  system_version_info: string;
  resources: Array<{ name: string; version: string; resource: { type_url: string; value: Uint8Array } }>;
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

function codec<T extends object>(name: string) {
  const type = messageType(name);
  return {
    serialize: (message: T): Buffer => Buffer.from(type.encode(type.fromObject(message as Record<string, unknown>)).finish()),
    deserialize: (bytes: Buffer): T => type.toObject(type.decode(bytes), DECODE_OPTIONS) as T,
  };
}

function bidi<Req extends object, Res extends object>(method: string, request: string, response: string): MethodDefinition<Req, Res> {
  const req = codec<Req>(request);
  const res = codec<Res>(response);
  return {
    path: `/envoy.service.discovery.v3.AggregatedDiscoveryService/${method}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: req.serialize,
    requestDeserialize: req.deserialize,
    responseSerialize: res.serialize,
    responseDeserialize: res.deserialize,
  };
}

export const ADS_SERVICE = {
  StreamAggregatedResources: bidi<SotwRequest, SotwResponse>(
    'StreamAggregatedResources',
    'envoy.service.discovery.v3.DiscoveryRequest',
    'envoy.service.discovery.v3.DiscoveryResponse',
  ),
  DeltaAggregatedResources: bidi<DeltaRequest, DeltaResponse>(
    'DeltaAggregatedResources',
    'envoy.service.discovery.v3.DeltaDiscoveryRequest',
    'envoy.service.discovery.v3.DeltaDiscoveryResponse',
  ),
};
