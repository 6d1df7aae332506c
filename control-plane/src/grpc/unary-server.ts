// A unary-only gRPC server on node:http2, for the two services on the request
// path (authz Check, ratelimit ShouldRateLimit). Every request Envoy proxies
// waits on one of these calls, so the per-call cost is the product's latency:
// grpc-js' general machinery (call objects, metadata, interceptors, filter stacks,
// stream wrappers) cost ~40% of a check's CPU and most of its allocation, which
// showed up as collector pauses in the tail. This server does what a unary call
// needs and no more: route by path, read one length-prefixed message, run the
// handler, answer with one message and grpc-status, or a trailers-only status.
//
// Protocol facts kept (grpc/grpc doc/PROTOCOL-HTTP2.md): POST with
// content-type application/grpc[+proto]; identity encoding only (advertised in
// grpc-accept-encoding); grpc-timeout honoured; grpc-message percent-encoded;
// unknown methods answer UNIMPLEMENTED; oversized messages RESOURCE_EXHAUSTED,
// refused before they are buffered.
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { declaredLength, encodeGrpcMessage, frameMessage, GrpcStatus, type GrpcStatusCode, MESSAGE_PREFIX_BYTES, parseGrpcTimeout, readUnaryBody } from './framing.ts';

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

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_NO_ERROR } = http2.constants;

// Node copies header objects before writing them, so these are shared by every call.
const RESPONSE_HEADERS = { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', 'grpc-accept-encoding': 'identity' };
const OK_TRAILERS = { 'grpc-status': '0' };

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

/** A trailers-only response: the status travels in the one HEADERS frame, which ends the stream. */
function respondStatus(stream: http2.ServerHttp2Stream, code: GrpcStatusCode, message: string): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ...RESPONSE_HEADERS, 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) }, { endStream: true });
  // The client may still be sending (an oversized message): stop its stream, the answer is given.
  if (!stream.readableEnded) stream.close(NGHTTP2_NO_ERROR);
}

function respondMessage(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once('wantTrailers', sendOkTrailers);
  stream.end(frameMessage(message));
}

function ignore(): void {}

export class UnaryGrpcServer {
  private readonly handlers = new Map<string, UnaryHandler>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly maxMessageBytes: number;
  private readonly server: http2.Http2Server;

  constructor(private readonly options: UnaryServerOptions = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
    this.server = http2.createServer({ settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1_024 } });
    // Every answer is a few small writes (headers, message, trailers) the caller waits on: with
    // Nagle's algorithm a later one may wait for the ACK of the first, which the peer may delay.
    this.server.on('connection', (socket: Socket) => socket.setNoDelay(true));
    this.server.on('session', (session) => this.watchSession(session));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    // A peer that breaks the protocol costs its own session, nothing else.
    this.server.on('sessionError', ignore);
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
        for (const session of this.sessions) session.destroy();
      }, graceMs);
      force.unref();
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const session of this.sessions) session.close();
    });
  }

  private watchSession(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('error', ignore);
    const keepaliveMs = this.options.keepaliveMs ?? 30_000;
    const timeoutMs = this.options.keepaliveTimeoutMs ?? 10_000;
    const pinger = setInterval(() => {
      if (session.destroyed || session.closed) return;
      const deadline = setTimeout(() => session.destroy(), timeoutMs);
      deadline.unref();
      session.ping(() => clearTimeout(deadline));
    }, keepaliveMs);
    pinger.unref();
    session.once('close', () => {
      clearInterval(pinger);
      this.sessions.delete(session);
    });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', ignore);
    const refusal = this.refusal(headers);
    if (refusal) return refusal(stream);
    const path = headers[':path'] ?? '';
    const handler = this.handlers.get(path);
    if (!handler) return respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`);
    const timeoutMs = parseGrpcTimeout(headers['grpc-timeout'] as string | undefined);
    this.readBody(stream, (body) => this.run(stream, path, handler, body, timeoutMs));
  }

  /** Why this request is not a call we take, as the answer to give; undefined when it is. */
  private refusal(headers: http2.IncomingHttpHeaders): ((stream: http2.ServerHttp2Stream) => void) | undefined {
    if (headers[':method'] !== 'POST') return (stream) => stream.respond({ [HTTP2_HEADER_STATUS]: 405, allow: 'POST' }, { endStream: true });
    const contentType = headers['content-type'] ?? '';
    if (!/^application\/grpc(\+proto)?(;|$)/.test(contentType)) return (stream) => stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return (stream) => respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported`);
    return undefined;
  }

  /** Collects the request body, refusing it as soon as it declares or grows past the limit. */
  private readBody(stream: http2.ServerHttp2Stream, onBody: (body: Buffer) => void): void {
    let first: Buffer | undefined;
    let chunks: Buffer[] | undefined;
    let received = 0;
    let lengthChecked = false;
    const limit = this.maxMessageBytes;
    const refuse = () => {
      stream.removeAllListeners('data');
      stream.removeAllListeners('end');
      respondStatus(stream, GrpcStatus.RESOURCE_EXHAUSTED, `message larger than ${limit} bytes`);
    };
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (first === undefined) first = chunk;
      else (chunks ??= [first]).push(chunk);
      if (!lengthChecked && received >= MESSAGE_PREFIX_BYTES) {
        lengthChecked = true;
        if ((declaredLength(chunks ? Buffer.concat(chunks) : first) ?? 0) > limit) return refuse();
      }
      if (received > limit + MESSAGE_PREFIX_BYTES) refuse();
    });
    stream.once('end', () => onBody(chunks ? Buffer.concat(chunks, received) : (first ?? Buffer.alloc(0))));
  }

  private run(stream: http2.ServerHttp2Stream, path: string, handler: UnaryHandler, body: Buffer, timeoutMs: number | undefined): void {
    const read = readUnaryBody(body, this.maxMessageBytes);
    if (!read.ok) return respondStatus(stream, read.status, read.reason);
    const deadline = timeoutMs === undefined ? undefined : setTimeout(() => respondStatus(stream, GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'), timeoutMs);
    const answer = (message: Uint8Array) => {
      if (deadline) clearTimeout(deadline);
      respondMessage(stream, message);
    };
    const fail = (error: unknown) => {
      if (deadline) clearTimeout(deadline);
      if (error instanceof GrpcError) return respondStatus(stream, error.code, error.message);
      this.options.onHandlerError?.(path, error);
      respondStatus(stream, GrpcStatus.INTERNAL, 'internal error');
    };
    try {
      const result = handler(read.message);
      if (result instanceof Uint8Array) answer(result);
      else result.then(answer, fail);
    } catch (error) {
      fail(error);
    }
  }
}
