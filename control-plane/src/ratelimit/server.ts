// The gRPC face of the service: envoy.service.ratelimit.v3.RateLimitService on
// its own port (grpc/unary-server.ts), on wire.ts's lean codec (not the registry
// of the Envoy API: this runs on the request-path worker). grpc-js clients'
// definition is in client.ts.
import { GrpcStatus } from '../grpc/framing.ts';
import { GrpcError, UnaryGrpcServer } from '../grpc/unary-server.ts';
import type { RateLimitService } from './service.ts';
import { decodeRateLimitRequest, encodeRateLimitResponse, type WireRateLimitRequest } from './wire.ts';

/** The method's HTTP/2 path. */
export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

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
  private decode(bytes: Buffer): WireRateLimitRequest {
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
