// The pure parts of unary gRPC over HTTP/2 (the protocol in grpc/grpc's
// doc/PROTOCOL-HTTP2.md): the 5-byte message prefix, the grpc-timeout header and
// the percent-encoding of grpc-message. No I/O here; unary-server.ts is the shell.

/** gRPC status codes the server answers with. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** The length prefix: one flag byte (1 = compressed) and a big-endian uint32 length. */
export const MESSAGE_PREFIX_BYTES = 5;

/** One length-prefixed message around `message`. */
export function frameMessage(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, MESSAGE_PREFIX_BYTES);
  return frame;
}

/** What a unary request body holds, or why it is not one message. */
export type UnaryBody =
  | { ok: true; message: Buffer }
  | { ok: false; status: GrpcStatusCode; reason: string };

/**
 * Reads the one message of a unary request body. A unary call carries exactly one
 * uncompressed message (the server advertises identity encoding only); anything
 * else is answered with a status, never guessed at.
 */
export function readUnaryBody(body: Buffer, maxMessageBytes: number): UnaryBody {
  if (body.length < MESSAGE_PREFIX_BYTES) return { ok: false, status: GrpcStatus.INTERNAL, reason: body.length === 0 ? 'no request message' : 'truncated message prefix' };
  if (body[0] !== 0) return { ok: false, status: GrpcStatus.INTERNAL, reason: 'compressed message without a negotiated encoding' };
  const length = body.readUInt32BE(1);
  if (length > maxMessageBytes) return { ok: false, status: GrpcStatus.RESOURCE_EXHAUSTED, reason: `message larger than ${maxMessageBytes} bytes` };
  const end = MESSAGE_PREFIX_BYTES + length;
  if (body.length < end) return { ok: false, status: GrpcStatus.INTERNAL, reason: 'truncated message' };
  if (body.length > end) return { ok: false, status: GrpcStatus.UNIMPLEMENTED, reason: 'more than one request message on a unary method' };
  return { ok: true, message: body.subarray(MESSAGE_PREFIX_BYTES, end) };
}

/**
 * The declared length of the message whose prefix starts `head`, or undefined while
 * fewer than 5 bytes have arrived; lets the server refuse an oversized message
 * before buffering it.
 */
export function declaredLength(head: Buffer): number | undefined {
  return head.length < MESSAGE_PREFIX_BYTES ? undefined : head.readUInt32BE(1);
}

const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * grpc-timeout ("TimeoutValue TimeoutUnit": at most 8 ASCII digits and one of
 * H M S m u n) in milliseconds; undefined when absent or malformed (a malformed
 * one is ignored, as if the client had set no deadline).
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]!;
}

/** grpc-message is percent-encoded UTF-8: bytes outside 0x20-0x7E, and '%' itself, become %XX. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of encodeGrpcMessage (for clients and tests); malformed escapes are kept as they are. */
export function decodeGrpcMessage(encoded: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const hex = encoded[i] === '%' ? encoded.slice(i + 1, i + 3) : '';
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(encoded.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes).toString('utf8');
}
