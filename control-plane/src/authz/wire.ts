// The Authorization service's gRPC method. Requests are read with a lean walk
// over the protobuf bytes that keeps only what the service reads; responses are
// encoded with the protobufjs codec (the loaded Envoy API the rest of the control
// plane uses).
import type { MethodDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { DECODE_OPTIONS, type CheckResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';
import { readsHeader } from './decide.ts';

/**
 * The fields of a CheckRequest the service reads (unset ones stay absent, as in a
 * protobufjs decode). `method` is for clients (tests) to send; the decoder skips it.
 */
export interface WireCheckRequest {
  attributes?: {
    request?: { http?: { headers?: Record<string, string>; path?: string; method?: string } };
    context_extensions?: Record<string, string>;
  };
}

// Field numbers, from envoy/service/auth/v3/external_auth.proto and attribute_context.proto.
const FIELD = {
  checkRequestAttributes: 1,
  attributesRequest: 4,
  attributesContextExtensions: 10,
  requestHttp: 2,
  httpHeaders: 3,
  httpPath: 4,
  mapKey: 1,
  mapValue: 2,
} as const;
const LENGTH_DELIMITED = 2;

/**
 * Calls `visit` for each field of the message ending at `end`; a field `visit`
 * does not take (returns false) is skipped. Only length-delimited fields are
 * offered: every field the service reads is one, and a field of another wire
 * type under a known number is not Envoy's and is skipped.
 */
function eachField(reader: protobuf.Reader, end: number, visit: (field: number) => boolean): void {
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wireType = tag & 7;
    if (wireType !== LENGTH_DELIMITED || !visit(tag >>> 3)) reader.skipType(wireType);
  }
  // A field that ran past its message's end would have read the next field's bytes.
  if (reader.pos !== end) throw new RangeError('CheckRequest: a field runs past the end of its message');
}

/** The end position of the length-delimited field at the reader. */
function fieldEnd(reader: protobuf.Reader): number {
  const length = reader.uint32();
  const end = reader.pos + length;
  if (end > reader.len) throw new RangeError('CheckRequest: a field runs past the end of the message');
  return end;
}

/** One map<string, string> entry into `into`; a value is decoded only when `keep` wants its key. */
function readMapEntry(reader: protobuf.Reader, into: Record<string, string>, keep: (key: string) => boolean): void {
  const end = fieldEnd(reader);
  let key = '';
  let value = '';
  let valueAt = -1;
  eachField(reader, end, (field) => {
    if (field === FIELD.mapKey) key = reader.string();
    else if (field === FIELD.mapValue) {
      valueAt = reader.pos; // read after the key is known (the key may come second)
      reader.skip(reader.uint32());
    } else return false;
    return true;
  });
  if (!keep(key)) return;
  if (valueAt >= 0) {
    reader.pos = valueAt;
    value = reader.string();
    reader.pos = end;
  }
  into[key] = value;
}

const everyKey = () => true;

function readHttp(reader: protobuf.Reader, http: NonNullable<NonNullable<NonNullable<WireCheckRequest['attributes']>['request']>['http']>): void {
  eachField(reader, fieldEnd(reader), (field) => {
    if (field === FIELD.httpHeaders) readMapEntry(reader, (http.headers ??= Object.create(null) as Record<string, string>), readsHeader);
    else if (field === FIELD.httpPath) http.path = reader.string();
    else return false;
    return true;
  });
}

function readRequest(reader: protobuf.Reader, request: NonNullable<NonNullable<WireCheckRequest['attributes']>['request']>): void {
  eachField(reader, fieldEnd(reader), (field) => {
    if (field !== FIELD.requestHttp) return false;
    readHttp(reader, (request.http ??= { path: '' }));
    return true;
  });
}

function readAttributes(reader: protobuf.Reader, attributes: NonNullable<WireCheckRequest['attributes']>): void {
  eachField(reader, fieldEnd(reader), (field) => {
    if (field === FIELD.attributesRequest) readRequest(reader, (attributes.request ??= {}));
    else if (field === FIELD.attributesContextExtensions) readMapEntry(reader, (attributes.context_extensions ??= Object.create(null) as Record<string, string>), everyKey);
    else return false;
    return true;
  });
}

/**
 * Reads a CheckRequest's bytes for what the service uses: the route's
 * context_extensions, the request path and the headers decide.ts reads (other
 * headers are skipped undecoded). Addresses, time, metadata and anything else are
 * stepped over, never materialised: the full protobufjs decode built a dozen
 * objects per check that nothing read. Maps use null-prototype objects, so a
 * header named __proto__ is an ordinary key. Throws on truncated input (grpc-js
 * then fails the call, and the route's on_error decides).
 */
export function decodeCheckRequest(bytes: Uint8Array): WireCheckRequest {
  const reader = protobuf.Reader.create(bytes);
  const request: WireCheckRequest = {};
  eachField(reader, reader.len, (field) => {
    if (field !== FIELD.checkRequestAttributes) return false;
    readAttributes(reader, (request.attributes ??= {}));
    return true;
  });
  return request;
}

const requestType = messageType('envoy.service.auth.v3.CheckRequest');
const responseType = messageType('envoy.service.auth.v3.CheckResponse');

/** The method's HTTP/2 path. */
export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** A CheckResponse's bytes. Responses come only from response.ts, typed as CheckResponse, so codec.ts's unknown-field walk (a guard for hand-written xDS config) is skipped. */
export function encodeCheckResponse(response: CheckResponse): Uint8Array {
  return responseType.encode(responseType.fromObject(response as Record<string, unknown>)).finish();
}

/** The method for grpc-js clients (tests, benches); the service itself is served by grpc/unary-server.ts. */
export const CHECK_METHOD: MethodDefinition<WireCheckRequest, CheckResponse> = {
  path: CHECK_PATH,
  requestStream: false,
  responseStream: false,
  requestSerialize: (message) => Buffer.from(requestType.encode(requestType.fromObject(message as Record<string, unknown>)).finish()),
  requestDeserialize: decodeCheckRequest,
  responseSerialize: (message) => Buffer.from(encodeCheckResponse(message)),
  responseDeserialize: (bytes) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as CheckResponse,
};

export const AUTHORIZATION_SERVICE = { Check: CHECK_METHOD };
