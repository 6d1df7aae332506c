// The gRPC face of the service: envoy.service.ratelimit.v3.RateLimitService on
// its own port (grpc/unary-server.ts), on the protobufjs codec of the Envoy protos
// Sluice loads.
import type * as grpc from '@grpc/grpc-js';
import { GrpcStatus } from '../grpc/framing.ts';
import { GrpcError, UnaryGrpcServer } from '../grpc/unary-server.ts';
import { DECODE_OPTIONS, type RateLimitRequest, type RateLimitResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';
import type { RateLimitService } from './service.ts';
import { encodeRateLimitResponse } from './wire.ts';

const requestType = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');

/**
 * The decoded message is read as it is: the service reads only strings, the
 * descriptors' entry lists and hits_addend (a number), which decode() already
 * gives; toObject's copy of every field is work for nothing on each decision.
 * Unset fields read as protobufjs' defaults ('', [], 0, null), which the service
 * treats like absent ones.
 */
function decodeRateLimitRequest(bytes: Uint8Array): RateLimitRequest {
  return requestType.decode(bytes) as unknown as RateLimitRequest;
}

/** The method's HTTP/2 path. */
export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

/** The method for grpc-js clients (tests, benches); the service itself is served by grpc/unary-server.ts. */
export const RATE_LIMIT_SERVICE_DEFINITION: grpc.ServiceDefinition = {
  ShouldRateLimit: {
    path: SHOULD_RATE_LIMIT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (message: RateLimitRequest) => Buffer.from(requestType.encode(requestType.fromObject(message)).finish()),
    requestDeserialize: decodeRateLimitRequest,
    // Responses come only from responses.ts/service.ts, typed as RateLimitResponse,
    // and are written field by field (wire.ts).
    responseSerialize: encodeRateLimitResponse,
    responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as RateLimitResponse,
  },
};

export class RateLimitServer {
  private readonly server: UnaryGrpcServer;

  constructor(readonly service: RateLimitService) {
    this.server = new UnaryGrpcServer({
      // Envoy keeps one long-lived HTTP/2 connection per worker; pings find dead ones.
      keepaliveMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      maxMessageBytes: 1024 * 1024,
      onHandlerError: (path, err) => service.log.error('rate-limit call failed', { path, error: err instanceof Error ? err.message : String(err) }),
    });
    this.server.handle(SHOULD_RATE_LIMIT_PATH, (bytes) => service.shouldRateLimit(this.decode(bytes)).then(encodeRateLimitResponse));
  }

  /** Bytes that are not a RateLimitRequest are the caller's error (INVALID_ARGUMENT; the policy's failure mode decides at Envoy). */
  private decode(bytes: Buffer): RateLimitRequest {
    try {
      return decodeRateLimitRequest(bytes);
    } catch (err) {
      this.service.log.error('rate-limit: malformed request', { error: err instanceof Error ? err.message : String(err) });
      throw new GrpcError(GrpcStatus.INVALID_ARGUMENT, 'malformed RateLimitRequest');
    }
  }

  /** Binds to host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return this.server.listen(host, port);
  }

  /** Stops taking calls, lets running ones finish (bounded), then closes the store. */
  async close(graceMs = 2_000): Promise<void> {
    await this.server.close(graceMs);
    await this.service.close();
  }
}
