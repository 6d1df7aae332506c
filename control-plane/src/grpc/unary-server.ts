// A unary-only gRPC server, for the two services on the request path (authz
// Check, ratelimit ShouldRateLimit). Every request Envoy proxies waits on one of
// these calls, so the per-call cost is the product's latency: grpc-js' general
// machinery cost ~40% of a check's CPU, and node:http2's per-stream objects and
// native handles were most of what survived into the old generation under load
// (collector pauses in the tail). This server speaks HTTP/2 itself (h2/) and does
// what a unary call needs and no more: route by path, read one length-prefixed
// message, run the handler, answer with one message and grpc-status, or a
// trailers-only status.
//
// Protocol facts kept (grpc/grpc doc/PROTOCOL-HTTP2.md): POST with
// content-type application/grpc[+proto]; identity encoding only (advertised in
// grpc-accept-encoding); grpc-timeout honoured; grpc-message percent-encoded;
// unknown methods answer UNIMPLEMENTED; oversized messages RESOURCE_EXHAUSTED,
// refused before they are buffered.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { GrpcStatus, type GrpcStatusCode, parseGrpcTimeout, readUnaryBody } from './framing.ts';
import { type Call, type CallSink, Http2Connection } from './h2/connection.ts';

/** Turns one request message into one response message (protobuf bytes both ways). */
export type UnaryHandler = (message: Buffer) => Uint8Array | Promise<Uint8Array>;

/** Thrown by a handler to answer with a status of its choosing instead of INTERNAL. */
export class GrpcError extends Error {
  constructor(
    readonly code: GrpcStatusCode,
    message: string,
  ) {
    super(message);
    this.name = 'GrpcError';
  }
}

export interface UnaryServerOptions {
  /** Largest request message accepted (default 1 MiB, as grpc-js' default was configured). */
  maxMessageBytes?: number;
  /** Streams one client may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; default 1,024). */
  maxConcurrentStreams?: number;
  /** A ping every this long finds dead connections (default 30 s)... */
  keepaliveMs?: number;
  /** ...and a connection whose ping is not answered within this is closed (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Told about every call answered INTERNAL because the handler threw (the cause is logged there). */
  onHandlerError?: (path: string, error: unknown) => void;
}

const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;|$)/;

export class UnaryGrpcServer implements CallSink {
  private readonly handlers = new Map<string, UnaryHandler>();
  private readonly connections = new Set<Http2Connection>();
  private readonly server: net.Server;
  private readonly connectionOptions: ConstructorParameters<typeof Http2Connection>[1];

  constructor(private readonly options: UnaryServerOptions = {}) {
    this.connectionOptions = {
      maxMessageBytes: options.maxMessageBytes ?? 1024 * 1024,
      maxConcurrentStreams: options.maxConcurrentStreams ?? 1_024,
      keepaliveMs: options.keepaliveMs ?? 30_000,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? 10_000,
    };
    this.server = net.createServer((socket) => {
      const connection = new Http2Connection(socket, this.connectionOptions, this, () => this.connections.delete(connection));
      this.connections.add(connection);
    });
  }

  /** Serves `handler` at `/package.Service/Method`. */
  handle(path: string, handler: UnaryHandler): this {
    this.handlers.set(path, handler);
    return this;
  }

  /** Binds host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting connections, tells every client to go away (GOAWAY: calls in
   * flight finish, new ones go elsewhere), and cuts what is left after `graceMs`.
   */
  close(graceMs = 2_000): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      const force = setTimeout(() => {
        for (const connection of this.connections) connection.destroy();
      }, graceMs);
      force.unref();
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const connection of this.connections) connection.shutdown();
    });
  }

  /** Refuses what is not a call this server takes, before its body is read. */
  headers(call: Call): void {
    if (call.method !== 'POST') return call.respondHttp(405, [['allow', 'POST']]);
    if (!GRPC_CONTENT_TYPE.test(call.contentType)) return call.respondHttp(415);
    if (call.grpcEncoding !== undefined && call.grpcEncoding !== 'identity') return call.respondStatus(GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${call.grpcEncoding} is not supported`);
    if (!this.handlers.has(call.path)) return call.respondStatus(GrpcStatus.UNIMPLEMENTED, `unknown method ${call.path}`);
    const timeoutMs = parseGrpcTimeout(call.grpcTimeout);
    if (timeoutMs !== undefined) call.deadline = setTimeout(() => call.respondStatus(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'), timeoutMs);
  }

  body(call: Call, body: Buffer): void {
    const read = readUnaryBody(body, this.connectionOptions.maxMessageBytes);
    if (!read.ok) return call.respondStatus(read.status, read.reason);
    const path = call.path;
    const fail = (error: unknown) => {
      if (error instanceof GrpcError) return call.respondStatus(error.code, error.message);
      this.options.onHandlerError?.(path, error);
      call.respondStatus(GrpcStatus.INTERNAL, 'internal error');
    };
    try {
      const result = this.handlers.get(path)!(read.message);
      if (result instanceof Uint8Array) call.respondMessage(result);
      else result.then((message) => call.respondMessage(message), fail);
    } catch (error) {
      fail(error);
    }
  }
}
