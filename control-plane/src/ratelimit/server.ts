// The gRPC face of the service: envoy.service.ratelimit.v3.RateLimitService on
// its own port, on the protobufjs codec of the Envoy protos Sluice loads.
import * as grpc from '@grpc/grpc-js';
import { DECODE_OPTIONS, type RateLimitRequest, type RateLimitResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';
import type { RateLimitService } from './service.ts';
import { encodeRateLimitResponse } from './wire.ts';

const requestType = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');

export const RATE_LIMIT_SERVICE_DEFINITION: grpc.ServiceDefinition = {
  ShouldRateLimit: {
    path: '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
    requestStream: false,
    responseStream: false,
    requestSerialize: (message: RateLimitRequest) => Buffer.from(requestType.encode(requestType.fromObject(message)).finish()),
    // The decoded message is read as it is: the service reads only strings, the
    // descriptors' entry lists and hits_addend (a number), which decode() already
    // gives; toObject's copy of every field is work for nothing on each decision.
    // Unset fields read as protobufjs' defaults ('', [], 0, null), which the
    // service treats like absent ones.
    requestDeserialize: (bytes: Buffer) => requestType.decode(bytes) as unknown as RateLimitRequest,
    // Responses come only from responses.ts/service.ts, typed as RateLimitResponse,
    // and are written field by field (wire.ts).
    responseSerialize: (message: RateLimitResponse) => encodeRateLimitResponse(message),
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as RateLimitResponse,
  },
};

export const RATE_LIMIT_SERVER_OPTIONS: grpc.ServerOptions = {
  // Envoy keeps one long-lived HTTP/2 connection per worker; pings find dead ones.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.max_receive_message_length': 1024 * 1024,
  // Channelz (grpc-js' introspection service, which Sluice does not serve) otherwise
  // keeps per-call and per-message counters and timestamps on every decision.
  'grpc.enable_channelz': 0,
};

export class RateLimitServer {
  private readonly server = new grpc.Server(RATE_LIMIT_SERVER_OPTIONS);

  constructor(readonly service: RateLimitService) {
    this.server.addService(RATE_LIMIT_SERVICE_DEFINITION, {
      ShouldRateLimit: (call: grpc.ServerUnaryCall<RateLimitRequest, RateLimitResponse>, callback: grpc.sendUnaryData<RateLimitResponse>) => {
        service.shouldRateLimit(call.request).then(
          (response) => callback(null, response),
          (err: unknown) => callback({ code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) }),
        );
      },
    });
  }

  /** Binds to host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  /** Stops taking calls, lets running ones finish (bounded), then closes the store. */
  async close(graceMs = 2_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.service.close();
  }
}
