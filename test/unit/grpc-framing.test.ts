// The pure half of the unary gRPC server: message framing, grpc-timeout and
// grpc-message encoding, over generated inputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeGrpcMessage, encodeGrpcMessage, frameMessage, GrpcStatus, MESSAGE_PREFIX_BYTES, parseGrpcTimeout, readUnaryBody } from '../../control-plane/src/grpc/framing.ts';

const RUNS = { numRuns: 500, seed: 20261124 };

test('framing: a framed message reads back as itself, and nothing else reads as one message', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 400 }), (message, limit) => {
      const frame = frameMessage(message);
      assert.equal(frame.length, MESSAGE_PREFIX_BYTES + message.length);
      const read = readUnaryBody(frame, limit);
      if (message.length > limit) return assert.deepEqual(read, { ok: false, status: GrpcStatus.RESOURCE_EXHAUSTED, reason: `message larger than ${limit} bytes` });
      assert.ok(read.ok);
      assert.deepEqual(new Uint8Array(read.message), message);
    }),
    RUNS,
  );
});

test('framing: truncated, compressed and doubled bodies are refused with a status', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), (message, cutSeed) => {
      const frame = frameMessage(message);
      const cut = cutSeed % frame.length; // strictly shorter than the frame
      const truncated = readUnaryBody(frame.subarray(0, cut), 1_000);
      assert.equal(truncated.ok, false);
      if (!truncated.ok) assert.equal(truncated.status, GrpcStatus.INTERNAL);

      const compressed = Buffer.from(frame);
      compressed[0] = 1;
      const readCompressed = readUnaryBody(compressed, 1_000);
      assert.equal(readCompressed.ok, false);

      const doubled = readUnaryBody(Buffer.concat([frame, frame]), 1_000);
      assert.equal(doubled.ok, false);
      if (!doubled.ok) assert.equal(doubled.status, GrpcStatus.UNIMPLEMENTED);
    }),
    RUNS,
  );
});

test('grpc-timeout: every well-formed value converts by its unit; malformed ones are ignored', () => {
  const units = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 } as const;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 99_999_999 }), fc.constantFrom(...(Object.keys(units) as (keyof typeof units)[])), (value, unit) => {
      assert.equal(parseGrpcTimeout(`${value}${unit}`), value * units[unit]);
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), (value) => {
      fc.pre(!/^\d{1,8}[HMSmun]$/.test(value));
      assert.equal(parseGrpcTimeout(value), undefined);
    }),
    RUNS,
  );
  assert.equal(parseGrpcTimeout(undefined), undefined);
  assert.equal(parseGrpcTimeout('123456789S'), undefined, 'nine digits is one too many');
});

test('grpc-message: percent-encoding keeps printable ASCII, escapes the rest, and round-trips any text', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
      const encoded = encodeGrpcMessage(text);
      assert.match(encoded, /^[\x20-\x7e]*$/);
      assert.equal(decodeGrpcMessage(encoded), text);
    }),
    RUNS,
  );
  assert.equal(encodeGrpcMessage('50% off\n'), '50%25 off%0A');
});
