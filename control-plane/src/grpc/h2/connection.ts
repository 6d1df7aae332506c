// The server side of one HTTP/2 connection (RFC 9113) carrying unary gRPC
// calls. It frames, mirrors the peer's HPACK table, keeps both directions' flow
// control and answers calls with a fixed set of response shapes; it knows
// nothing of methods or handlers (unary-server.ts decides those).
//
// Why not node:http2: every stream there is a Duplex object tree plus a native
// handle, ~2-3 KB that outlives the young generation under load and is
// finalised in major collections; a call here is one small object.
import type { Socket } from 'node:net';
import { declaredLength, encodeGrpcMessage, GrpcStatus, type GrpcStatusCode, MESSAGE_PREFIX_BYTES } from '../framing.ts';
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  type ErrorCodeValue,
  Flag,
  frame,
  FRAME_HEADER_BYTES,
  FrameType,
  goawayFrame,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from './frames.ts';
import { encodeHeaderBlock, HpackDecoder, HpackError } from './hpack.ts';

export interface ConnectionOptions {
  maxMessageBytes: number;
  maxConcurrentStreams: number;
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

/** What the server does with calls; both may answer at once or later. */
export interface CallSink {
  /** The request headers are in; the body is not. Answer now to refuse the call. */
  headers(call: Call): void;
  /** The whole request body (still length-prefixed), once the client ended its side. */
  body(call: Call, body: Buffer): void;
}

/** This side's receive window for the whole connection; replenished at half. */
const CONNECTION_WINDOW = 1 << 20;
/** Header blocks larger than this end the connection (advertised as SETTINGS_MAX_HEADER_LIST_SIZE). */
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/** A peer that does not read its answers may not make this side buffer more than this. */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;

// Header blocks that never change, encoded once.
const GRPC_RESPONSE_FIELDS = [[':status', '200'], ['content-type', 'application/grpc'], ['grpc-accept-encoding', 'identity']] as const;
const RESPONSE_BLOCK = encodeHeaderBlock(GRPC_RESPONSE_FIELDS);
const OK_TRAILERS_BLOCK = encodeHeaderBlock([['grpc-status', '0']]);
/** grpc-message is cut so that a trailers-only answer always fits one frame. */
const MAX_STATUS_MESSAGE_CHARS = 1_024;

/** One request stream, as the server sees it. */
export class Call {
  method = '';
  path = '';
  contentType = '';
  grpcEncoding: string | undefined;
  grpcTimeout: string | undefined;
  /** Set by whoever answers; later answers are dropped. */
  answered = false;
  /** Cleared when the stream closes, so an abandoned call's timer does not outlive it. */
  deadline: NodeJS.Timeout | undefined;
  /** @internal */ remoteEnded = false;
  /** @internal */ chunks: Buffer[] = [];
  /** @internal */ received = 0;
  /** @internal */ receivedSinceUpdate = 0;
  /** @internal */ sendWindow: number;
  /** @internal DATA payload still held back by flow control; trailers follow it. */
  unsent: Buffer | undefined;

  constructor(
    readonly id: number,
    private readonly connection: Http2Connection,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** Answers with one message and grpc-status 0. */
  respondMessage(message: Uint8Array): void {
    if (this.answered) return;
    this.answered = true;
    this.connection.sendMessage(this, message);
  }

  /** Answers with a status and no message (a trailers-only response). */
  respondStatus(code: GrpcStatusCode, message: string): void {
    if (this.answered) return;
    this.answered = true;
    const fields: (readonly [string, string])[] = [...GRPC_RESPONSE_FIELDS, ['grpc-status', String(code)], ['grpc-message', encodeGrpcMessage(message.slice(0, MAX_STATUS_MESSAGE_CHARS))]];
    this.connection.sendHeadersOnly(this, encodeHeaderBlock(fields));
  }

  /** Answers a request that is not a gRPC call with a bare HTTP status. */
  respondHttp(status: number, fields: readonly (readonly [string, string])[] = []): void {
    if (this.answered) return;
    this.answered = true;
    this.connection.sendHeadersOnly(this, encodeHeaderBlock([[':status', String(status)], ...fields]));
  }
}

/** A header block being assembled from HEADERS and CONTINUATION frames. */
interface PendingHeaders {
  streamId: number;
  endStream: boolean;
  parts: Buffer[];
  bytes: number;
}

export class Http2Connection {
  private readonly calls = new Map<number, Call>();
  private readonly decoder = new HpackDecoder();
  private input: Buffer | undefined;
  private prefaceSeen = false;
  private settingsSeen = false;
  private pendingHeaders: PendingHeaders | undefined;
  private lastStreamId = 0;
  private receivedSinceUpdate = 0;
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** Calls whose DATA waits for window, in the order they asked. */
  private readonly blocked: Call[] = [];
  private output: Buffer[] = [];
  private flushScheduled = false;
  private goingAway = false;
  private closed = false;
  private readonly keepalive: NodeJS.Timeout;
  private pingDeadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly options: ConnectionOptions,
    private readonly sink: CallSink,
    private readonly onClose: () => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.cleanUp());
    this.send(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK_BYTES],
        [Setting.ENABLE_PUSH, 0],
      ]),
    );
    this.send(windowUpdateFrame(0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.keepalive = setInterval(() => this.ping(), options.keepaliveMs);
    this.keepalive.unref();
  }

  /** Graceful close: GOAWAY now (calls in flight finish, new ones are refused), the socket ends when the last call does. */
  shutdown(): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.send(goawayFrame(this.lastStreamId, ErrorCode.NO_ERROR));
    this.endIfIdle();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- reading ----

  private receive(chunk: Buffer): void {
    try {
      this.receiveFrames(chunk);
    } catch {
      // A bug here must cost this connection only, never the process (and every other client).
      this.destroy();
    }
  }

  private receiveFrames(chunk: Buffer): void {
    let input = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    let at = 0;
    if (!this.prefaceSeen) {
      if (input.length < CLIENT_PREFACE.length) {
        if (!CLIENT_PREFACE.subarray(0, input.length).equals(input)) return this.destroy();
        this.input = input;
        return;
      }
      if (!CLIENT_PREFACE.equals(input.subarray(0, CLIENT_PREFACE.length))) return this.destroy();
      this.prefaceSeen = true;
      at = CLIENT_PREFACE.length;
    }
    while (!this.closed && input.length - at >= FRAME_HEADER_BYTES) {
      const length = (input[at]! << 16) | (input[at + 1]! << 8) | input[at + 2]!;
      // This side never raises SETTINGS_MAX_FRAME_SIZE above the default.
      if (length > DEFAULT_MAX_FRAME_SIZE) return this.fail(ErrorCode.FRAME_SIZE_ERROR);
      if (input.length - at < FRAME_HEADER_BYTES + length) break;
      const type = input[at + 3]!;
      const flags = input[at + 4]!;
      const streamId = input.readUInt32BE(at + 5) & MAX_WINDOW;
      const payload = input.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
      at += FRAME_HEADER_BYTES + length;
      this.onFrame(type, flags, streamId, payload);
    }
    this.input = at >= input.length ? undefined : input.subarray(at);
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen) {
      // The client's preface ends with a SETTINGS frame (RFC 9113 §3.4).
      if (type !== FrameType.SETTINGS || flags & Flag.ACK) return this.fail(ErrorCode.PROTOCOL_ERROR);
      this.settingsSeen = true;
    }
    if (this.pendingHeaders && type !== FrameType.CONTINUATION) return this.fail(ErrorCode.PROTOCOL_ERROR);
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case FrameType.RST_STREAM:
        if (streamId === 0 || payload.length !== 4) return this.fail(ErrorCode.PROTOCOL_ERROR);
        return this.closeCall(streamId);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PING:
        return this.onPing(flags, streamId, payload);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.GOAWAY:
        // The client is leaving; it closes the socket when its calls are done.
        return;
      case FrameType.PUSH_PROMISE:
        return this.fail(ErrorCode.PROTOCOL_ERROR);
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) return this.fail(ErrorCode.PROTOCOL_ERROR);
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) return this.fail(ErrorCode.PROTOCOL_ERROR);
      start = 1;
      end -= payload[0]!;
    }
    if (flags & Flag.PRIORITY) start += 5;
    if (end < start) return this.fail(ErrorCode.PROTOCOL_ERROR);
    const fragment = payload.subarray(start, end);
    this.pendingHeaders = { streamId, endStream: (flags & Flag.END_STREAM) !== 0, parts: [fragment], bytes: fragment.length };
    if (flags & Flag.END_HEADERS) this.onHeaderBlockDone();
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const pending = this.pendingHeaders;
    if (!pending || pending.streamId !== streamId) return this.fail(ErrorCode.PROTOCOL_ERROR);
    pending.parts.push(payload);
    pending.bytes += payload.length;
    if (pending.bytes > MAX_HEADER_BLOCK_BYTES) return this.fail(ErrorCode.ENHANCE_YOUR_CALM);
    if (flags & Flag.END_HEADERS) this.onHeaderBlockDone();
  }

  private onHeaderBlockDone(): void {
    const { streamId, endStream, parts } = this.pendingHeaders!;
    this.pendingHeaders = undefined;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    // Decoded whatever becomes of the stream: the peer's table must stay mirrored.
    const request = this.request;
    request.method = request.path = request.contentType = '';
    request.grpcEncoding = request.grpcTimeout = undefined;
    try {
      this.decoder.decode(block, this.readField);
    } catch (error) {
      if (error instanceof HpackError) return this.fail(ErrorCode.COMPRESSION_ERROR);
      throw error;
    }
    const existing = this.calls.get(streamId);
    if (existing) {
      // Trailers from the client: they must end the stream.
      if (!endStream || existing.remoteEnded) return this.fail(ErrorCode.PROTOCOL_ERROR);
      return this.onRemoteEnd(existing);
    }
    if (streamId <= this.lastStreamId) return; // a stream already closed; nothing to do
    this.lastStreamId = streamId;
    if (this.goingAway || this.calls.size >= this.options.maxConcurrentStreams) {
      this.send(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const call = new Call(streamId, this, this.peerInitialWindow);
    call.method = request.method;
    call.path = request.path;
    call.contentType = request.contentType;
    call.grpcEncoding = request.grpcEncoding;
    call.grpcTimeout = request.grpcTimeout;
    // Set before the sink sees the call, so that an answer given at once does not reset a stream the client already ended.
    call.remoteEnded = endStream;
    this.calls.set(streamId, call);
    this.sink.headers(call);
    if (endStream) this.onRemoteEnd(call);
  }

  /** The request fields of the header block being decoded (one object per connection, reused). */
  private readonly request: RequestFields = { method: '', path: '', contentType: '', grpcEncoding: undefined, grpcTimeout: undefined };
  private readonly readField = (name: string, value: string): void => readRequestField(this.request, name, value);

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId > this.lastStreamId) return this.fail(ErrorCode.PROTOCOL_ERROR);
    // Every DATA byte counts against the connection window, whatever becomes of it.
    this.receivedSinceUpdate += payload.length;
    if (this.receivedSinceUpdate >= CONNECTION_WINDOW / 2) {
      this.send(windowUpdateFrame(0, this.receivedSinceUpdate));
      this.receivedSinceUpdate = 0;
    }
    const call = this.calls.get(streamId);
    if (!call) return; // closed already (refused, reset, or answered early)
    if (call.remoteEnded) {
      this.send(rstStreamFrame(streamId, ErrorCode.STREAM_CLOSED));
      return this.forget(call);
    }
    let data = payload;
    if (flags & Flag.PADDED) {
      if (payload.length < 1 || payload[0]! > payload.length - 1) return this.fail(ErrorCode.PROTOCOL_ERROR);
      data = payload.subarray(1, payload.length - payload[0]!);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (!call.answered) this.collect(call, data);
    call.receivedSinceUpdate += payload.length;
    if (!endStream && call.receivedSinceUpdate >= DEFAULT_WINDOW / 2) {
      this.send(windowUpdateFrame(streamId, call.receivedSinceUpdate));
      call.receivedSinceUpdate = 0;
    }
    if (endStream) this.onRemoteEnd(call);
  }

  /** Buffers request bytes, refusing a message as soon as it declares or grows past the limit. */
  private collect(call: Call, data: Buffer): void {
    if (data.length === 0) return;
    const before = call.received;
    call.chunks.push(data);
    call.received += data.length;
    const limit = this.options.maxMessageBytes;
    const lengthJustKnown = before < MESSAGE_PREFIX_BYTES && call.received >= MESSAGE_PREFIX_BYTES;
    const tooLong = call.received > limit + MESSAGE_PREFIX_BYTES || (lengthJustKnown && (declaredLength(Buffer.concat(call.chunks)) ?? 0) > limit);
    if (!tooLong) return;
    call.chunks = [];
    call.respondStatus(GrpcStatus.RESOURCE_EXHAUSTED, `message larger than ${limit} bytes`);
  }

  private onRemoteEnd(call: Call): void {
    call.remoteEnded = true;
    if (call.answered) return; // refused already; forgotten, or forgotten once its held-back answer is out
    const body = call.chunks.length === 1 ? call.chunks[0]! : Buffer.concat(call.chunks, call.received);
    call.chunks = [];
    this.sink.body(call, body);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.fail(ErrorCode.PROTOCOL_ERROR);
    if (flags & Flag.ACK) return payload.length === 0 ? undefined : this.fail(ErrorCode.FRAME_SIZE_ERROR);
    if (payload.length % 6 !== 0) return this.fail(ErrorCode.FRAME_SIZE_ERROR);
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) return this.fail(ErrorCode.FLOW_CONTROL_ERROR);
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const call of this.calls.values()) call.sendWindow += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) return this.fail(ErrorCode.PROTOCOL_ERROR);
        this.peerMaxFrameSize = value;
      }
      // HEADER_TABLE_SIZE needs nothing: this side's encoder never indexes.
    }
    this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.drainBlocked();
  }

  private onPing(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.fail(ErrorCode.PROTOCOL_ERROR);
    if (payload.length !== 8) return this.fail(ErrorCode.FRAME_SIZE_ERROR);
    if (flags & Flag.ACK) {
      clearTimeout(this.pingDeadline);
      this.pingDeadline = undefined;
      return;
    }
    this.send(frame(FrameType.PING, Flag.ACK, 0, payload));
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) return this.fail(ErrorCode.FRAME_SIZE_ERROR);
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) return this.fail(ErrorCode.PROTOCOL_ERROR);
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) return this.fail(ErrorCode.FLOW_CONTROL_ERROR);
    } else {
      const call = this.calls.get(streamId);
      if (!call) return;
      if (increment === 0 || call.sendWindow + increment > MAX_WINDOW) {
        this.send(rstStreamFrame(streamId, increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR));
        return this.forget(call);
      }
      call.sendWindow += increment;
    }
    this.drainBlocked();
  }

  // ---- writing ----

  /** @internal HEADERS, the message as DATA (as far as the windows allow) and the OK trailers. */
  sendMessage(call: Call, message: Uint8Array): void {
    if (this.closed || !this.calls.has(call.id)) return;
    const length = MESSAGE_PREFIX_BYTES + message.length;
    const fitsNow = length <= this.sendWindow && length <= call.sendWindow && length <= this.peerMaxFrameSize;
    if (!fitsNow) {
      this.send(headersFrame(call.id, RESPONSE_BLOCK, false));
      const payload = Buffer.allocUnsafe(length);
      payload[0] = 0;
      payload.writeUInt32BE(message.length, 1);
      payload.set(message, MESSAGE_PREFIX_BYTES);
      call.unsent = payload;
      this.blocked.push(call);
      return this.drainBlocked();
    }
    // The common case: one buffer with all three frames.
    const headersLength = FRAME_HEADER_BYTES + RESPONSE_BLOCK.length;
    const dataLength = FRAME_HEADER_BYTES + length;
    const out = Buffer.allocUnsafe(headersLength + dataLength + FRAME_HEADER_BYTES + OK_TRAILERS_BLOCK.length);
    writeFrameHeader(out, 0, RESPONSE_BLOCK.length, FrameType.HEADERS, Flag.END_HEADERS, call.id);
    out.set(RESPONSE_BLOCK, FRAME_HEADER_BYTES);
    writeFrameHeader(out, headersLength, length, FrameType.DATA, 0, call.id);
    out[headersLength + FRAME_HEADER_BYTES] = 0;
    out.writeUInt32BE(message.length, headersLength + FRAME_HEADER_BYTES + 1);
    out.set(message, headersLength + FRAME_HEADER_BYTES + MESSAGE_PREFIX_BYTES);
    const trailersAt = headersLength + dataLength;
    writeFrameHeader(out, trailersAt, OK_TRAILERS_BLOCK.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, call.id);
    out.set(OK_TRAILERS_BLOCK, trailersAt + FRAME_HEADER_BYTES);
    this.sendWindow -= length;
    call.sendWindow -= length;
    this.send(out);
    this.localEnd(call);
  }

  /** @internal One HEADERS frame that ends the stream. */
  sendHeadersOnly(call: Call, block: Buffer): void {
    if (this.closed || !this.calls.has(call.id)) return;
    this.send(headersFrame(call.id, block, true));
    this.localEnd(call);
  }

  /** Sends held-back DATA as the windows open, then each call's trailers. */
  private drainBlocked(): void {
    while (this.blocked.length > 0 && this.sendWindow > 0) {
      const call = this.blocked[0]!;
      const unsent = call.unsent;
      if (!unsent || !this.calls.has(call.id)) {
        this.blocked.shift();
        continue;
      }
      const size = Math.min(unsent.length, this.sendWindow, call.sendWindow, this.peerMaxFrameSize);
      if (size <= 0) {
        // This call waits for its own window; let the others go ahead of it.
        if (this.blocked.every((other) => other.sendWindow <= 0)) return;
        this.blocked.push(this.blocked.shift()!);
        continue;
      }
      this.send(frame(FrameType.DATA, 0, call.id, unsent.subarray(0, size)));
      this.sendWindow -= size;
      call.sendWindow -= size;
      call.unsent = size === unsent.length ? undefined : unsent.subarray(size);
      if (call.unsent) continue;
      this.blocked.shift();
      this.send(headersFrame(call.id, OK_TRAILERS_BLOCK, true));
      this.localEnd(call);
    }
  }

  /** This side has sent END_STREAM: the call is over once the client's side is too, or is cut short if it is not. */
  private localEnd(call: Call): void {
    if (!call.remoteEnded) this.send(rstStreamFrame(call.id, ErrorCode.NO_ERROR)); // stop sending: the answer is given
    this.forget(call);
  }

  private closeCall(streamId: number): void {
    const call = this.calls.get(streamId);
    if (!call) return;
    call.answered = true; // the client gave up: a late answer is dropped
    this.forget(call);
  }

  private forget(call: Call): void {
    clearTimeout(call.deadline);
    call.deadline = undefined;
    call.chunks = [];
    call.unsent = undefined;
    this.calls.delete(call.id);
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (this.goingAway && this.calls.size === 0) {
      this.flush();
      this.socket.end();
    }
  }

  private ping(): void {
    if (this.closed || this.pingDeadline) return;
    this.pingDeadline = setTimeout(() => this.destroy(), this.options.keepaliveTimeoutMs);
    this.pingDeadline.unref();
    this.send(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
  }

  /** A connection error (RFC 9113 §5.4.1): GOAWAY with the code, then close. */
  private fail(code: ErrorCodeValue): void {
    if (this.closed) return;
    this.send(goawayFrame(this.lastStreamId, code));
    this.flush();
    this.closed = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  private send(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    this.output.push(bytes);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Everything answered in this turn of the event loop leaves in one write.
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.output.length === 0 || this.socket.destroyed || !this.socket.writable) {
      this.output = [];
      return;
    }
    const out = this.output.length === 1 ? this.output[0]! : Buffer.concat(this.output);
    this.output = [];
    this.socket.write(out);
    if (this.socket.writableLength > MAX_UNSENT_BYTES) this.destroy();
  }

  private cleanUp(): void {
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.pingDeadline);
    for (const call of this.calls.values()) {
      call.answered = true;
      clearTimeout(call.deadline);
    }
    this.calls.clear();
    this.blocked.length = 0;
    this.onClose();
  }
}

function headersFrame(streamId: number, block: Buffer, endStream: boolean): Buffer {
  return frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), streamId, block);
}

/** The request headers a call needs; the rest are read past. */
interface RequestFields {
  method: string;
  path: string;
  contentType: string;
  grpcEncoding: string | undefined;
  grpcTimeout: string | undefined;
}

function readRequestField(call: RequestFields, name: string, value: string): void {
  switch (name) {
    case ':method':
      call.method = value;
      return;
    case ':path':
      call.path = value;
      return;
    case 'content-type':
      call.contentType = value;
      return;
    case 'grpc-encoding':
      call.grpcEncoding = value;
      return;
    case 'grpc-timeout':
      call.grpcTimeout = value;
      return;
  }
}
