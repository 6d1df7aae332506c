// The Authorization service's gRPC method, built on the protobufjs codec (the
// same loaded Envoy API the rest of the control plane uses).
import type { MethodDefinition } from '@grpc/grpc-js';
import { DECODE_OPTIONS, type CheckResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';

/** The fields of a CheckRequest the service reads. */
export interface WireCheckRequest {
  attributes?: {
    request?: { http?: { headers?: Record<string, string>; path?: string; method?: string } };
    context_extensions?: Record<string, string>;
  };
}

const requestType = messageType('envoy.service.auth.v3.CheckRequest');
const responseType = messageType('envoy.service.auth.v3.CheckResponse');

export const CHECK_METHOD: MethodDefinition<WireCheckRequest, CheckResponse> = {
  path: '/envoy.service.auth.v3.Authorization/Check',
  requestStream: false,
  responseStream: false,
  requestSerialize: (message) => Buffer.from(requestType.encode(requestType.fromObject(message as Record<string, unknown>)).finish()),
  // The decoded message is read as it is: the fields the service reads are plain
  // strings and string maps already, so toObject's copy of every field (addresses,
  // time, metadata) would be work for nothing on each check. Unset message fields
  // read as null, which the service's optional chaining treats like undefined.
  requestDeserialize: (bytes) => requestType.decode(bytes) as unknown as WireCheckRequest,
  // Responses come only from response.ts, typed as CheckResponse, so codec.ts's
  // unknown-field walk (a guard for hand-written xDS config) is skipped here.
  responseSerialize: (message) => Buffer.from(responseType.encode(responseType.fromObject(message as Record<string, unknown>)).finish()),
  responseDeserialize: (bytes) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as CheckResponse,
};

export const AUTHORIZATION_SERVICE = { Check: CHECK_METHOD };
