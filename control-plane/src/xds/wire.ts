// gRPC method definitions for ADS, built by hand on the protobufjs codec so the
// server moves already-encoded resources without re-encoding them.
import type { MethodDefinition } from '@grpc/grpc-js';
import { DECODE_OPTIONS } from '../proto/codec.ts';
import { varintBytes, writeVarint } from '../proto/scratch-writer.ts';
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

function bidi<Req extends object, Res extends object>(method: string, request: string, response: string, serialize: (message: Res) => Buffer): MethodDefinition<Req, Res> {
  const req = codec<Req>(request);
  const res = codec<Res>(response);
  return {
    path: `/envoy.service.discovery.v3.AggregatedDiscoveryService/${method}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: req.serialize,
    requestDeserialize: req.deserialize,
    responseSerialize: serialize,
    responseDeserialize: res.deserialize,
  };
}

export const ADS_SERVICE = {
  StreamAggregatedResources: bidi<SotwRequest, SotwResponse>(
    'StreamAggregatedResources',
    'envoy.service.discovery.v3.DiscoveryRequest',
    'envoy.service.discovery.v3.DiscoveryResponse',
    encodeSotwResponse,
  ),
  DeltaAggregatedResources: bidi<DeltaRequest, DeltaResponse>(
    'DeltaAggregatedResources',
    'envoy.service.discovery.v3.DeltaDiscoveryRequest',
    'envoy.service.discovery.v3.DeltaDiscoveryResponse',
    encodeDeltaResponse,
  ),
};

// ---- responses, written straight into one buffer of their exact size ----------------
//
// A response carries resources already encoded (a route table is ~300 KB at 1,000
// routes, ~3 MB at 10,000) to every stream. protobufjs copied each one three times
// on the way (into its writer, out of it, into a Buffer) before gRPC's framing
// copies it once more; here it is copied once. Fields are written in field-number
// order, as protobufjs writes them (test/unit/xds-wire.test.ts holds the bytes equal).

/** Field numbers (envoy/service/discovery/v3/discovery.proto, google/protobuf/any.proto). */
const FIELD = {
  response: { versionInfo: 1, resources: 2, typeUrl: 4, nonce: 5 },
  delta: { systemVersionInfo: 1, resources: 2, typeUrl: 4, nonce: 5, removedResources: 6 },
  resource: { version: 1, resource: 2, name: 3 },
  any: { typeUrl: 1, value: 2 },
} as const;

const LENGTH_DELIMITED = 2;

export function encodeSotwResponse(message: SotwResponse): Buffer {
  const f = FIELD.response;
  const anySizes = message.resources.map(anySize);
  let size = stringField(f.versionInfo, message.version_info) + stringField(f.typeUrl, message.type_url) + stringField(f.nonce, message.nonce);
  for (const any of anySizes) size += delimited(f.resources, any);
  const out = new FieldWriter(size);
  out.string(f.versionInfo, message.version_info);
  message.resources.forEach((resource, i) => out.header(f.resources, anySizes[i]!).any(resource));
  out.string(f.typeUrl, message.type_url);
  out.string(f.nonce, message.nonce);
  return out.done();
}

export function encodeDeltaResponse(message: DeltaResponse): Buffer {
  const f = FIELD.delta;
  const r = FIELD.resource;
  const sizes = message.resources.map((entry) => {
    const any = anySize(entry.resource);
    return { any, resource: stringField(r.version, entry.version) + delimited(r.resource, any) + stringField(r.name, entry.name) };
  });
  let size = stringField(f.systemVersionInfo, message.system_version_info) + stringField(f.typeUrl, message.type_url) + stringField(f.nonce, message.nonce);
  for (const { resource } of sizes) size += delimited(f.resources, resource);
  for (const name of message.removed_resources) size += stringField(f.removedResources, name);
  const out = new FieldWriter(size);
  out.string(f.systemVersionInfo, message.system_version_info);
  message.resources.forEach((entry, i) => {
    out.header(f.resources, sizes[i]!.resource).string(r.version, entry.version).header(r.resource, sizes[i]!.any).any(entry.resource).string(r.name, entry.name);
  });
  out.string(f.typeUrl, message.type_url);
  out.string(f.nonce, message.nonce);
  for (const name of message.removed_resources) out.string(f.removedResources, name);
  return out.done();
}

function anySize(any: { type_url: string; value: Uint8Array }): number {
  return stringField(FIELD.any.typeUrl, any.type_url) + delimited(FIELD.any.value, any.value.length);
}

/** Bytes of a length-delimited field holding `length` bytes. */
function delimited(field: number, length: number): number {
  return varintBytes((field << 3) | LENGTH_DELIMITED) + varintBytes(length) + length;
}

function stringField(field: number, value: string): number {
  return delimited(field, Buffer.byteLength(value, 'utf8'));
}

/** Writes length-delimited fields into a buffer sized beforehand; done() checks the size was right. */
class FieldWriter {
  private readonly buffer: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  /** A field's tag and length; its content follows. */
  header(field: number, length: number): this {
    this.varint((field << 3) | LENGTH_DELIMITED);
    this.varint(length);
    return this;
  }

  string(field: number, value: string): this {
    const length = Buffer.byteLength(value, 'utf8');
    this.header(field, length);
    this.at += this.buffer.write(value, this.at, length, 'utf8');
    return this;
  }

  any(any: { type_url: string; value: Uint8Array }): this {
    this.string(FIELD.any.typeUrl, any.type_url);
    this.header(FIELD.any.value, any.value.length);
    this.buffer.set(any.value, this.at);
    this.at += any.value.length;
    return this;
  }

  done(): Buffer {
    if (this.at !== this.buffer.length) throw new Error(`xDS response: wrote ${this.at} bytes of ${this.buffer.length}`);
    return this.buffer;
  }

  private varint(value: number): void {
    this.at = writeVarint(this.buffer, this.at, value);
  }
}
