// The Authorization service's gRPC method, built on the protobufjs codec (the
// same loaded Envoy API the rest of the control plane uses).
import type { MethodDefinition } from '@grpc/grpc-js';
import { DECODE_OPTIONS, encode, type CheckResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';

/** The fields of a CheckRequest the service reads. */
export interface WireCheckRequest {
  attributes?: {
    request?: { http?: { headers?: Record<string, string>; path?: string; method?: string } };
    context_extensions?: Record<string, string>;
  };
}

const requestType = messageType('envoy.service.auth.v3.CheckRequest');

export const CHECK_METHOD: MethodDefinition<WireCheckRequest, CheckResponse> = {
  path: '/envoy.service.auth.v3.Authorization/Check',
  requestStream: false,
  responseStream: false,
  requestSerialize: (message) => Buffer.from(requestType.encode(requestType.fromObject(message as Record<string, unknown>)).finish()),
  requestDeserialize: (bytes) => requestType.toObject(requestType.decode(bytes), DECODE_OPTIONS) as WireCheckRequest,
  responseSerialize: (message) => Buffer.from(encode('envoy.service.auth.v3.CheckResponse', message)),
  responseDeserialize: (bytes) => {
    const type = messageType('envoy.service.auth.v3.CheckResponse');
    return type.toObject(type.decode(bytes), DECODE_OPTIONS) as CheckResponse;
  },
};

export const AUTHORIZATION_SERVICE = { Check: CHECK_METHOD };
