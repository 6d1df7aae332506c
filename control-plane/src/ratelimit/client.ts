// The ShouldRateLimit method for grpc-js clients (tests, benches): requests are
// encoded and responses decoded with the full protobufjs codec of the Envoy API.
// The service itself (server.ts, on the request-path worker) uses wire.ts only,
// so it never loads that registry.
import type * as grpc from '@grpc/grpc-js';
import { DECODE_OPTIONS, type RateLimitRequest, type RateLimitResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';
import { SHOULD_RATE_LIMIT_PATH } from './server.ts';
import { decodeRateLimitRequest, encodeRateLimitResponse } from './wire.ts';

const requestType = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');

export const RATE_LIMIT_SERVICE_DEFINITION: grpc.ServiceDefinition = {
  ShouldRateLimit: {
    path: SHOULD_RATE_LIMIT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (message: RateLimitRequest) => Buffer.from(requestType.encode(requestType.fromObject(message)).finish()),
    requestDeserialize: decodeRateLimitRequest,
    responseSerialize: encodeRateLimitResponse,
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as RateLimitResponse,
  },
};
