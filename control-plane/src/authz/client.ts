// The Check method for grpc-js clients (tests, benches): requests are encoded and
// responses decoded with the full protobufjs codec of the Envoy API. The service
// itself (grpc/unary-server.ts, on the request-path worker) uses wire.ts only, so
// it never loads that registry.
import type { MethodDefinition } from '@grpc/grpc-js';
import { DECODE_OPTIONS, type CheckResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';
import { CHECK_PATH, decodeCheckRequest, encodeCheckResponse, type WireCheckRequest } from './wire.ts';

const requestType = messageType('envoy.service.auth.v3.CheckRequest');
const responseType = messageType('envoy.service.auth.v3.CheckResponse');

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
