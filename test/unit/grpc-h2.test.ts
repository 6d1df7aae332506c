// The HTTP/2 pieces under the unary gRPC server (control-plane/src/grpc/h2/),
// judged by a real encoder: node:http2's client (nghttp2) sends generated
// headers to a raw TCP listener, and what it put on the wire must decode to what
// it was asked to send. Then the connection itself against raw frames a
// well-behaved client never sends.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { frameMessage } from '../../control-plane/src/grpc/framing.ts';
import { CLIENT_PREFACE, ErrorCode, Flag, frame, FrameType, Setting, settingsFrame } from '../../control-plane/src/grpc/h2/frames.ts';
import { encodeHeaderBlock, HpackDecoder, HpackError, STATIC_TABLE } from '../../control-plane/src/grpc/h2/hpack.ts';
import { decodeHuffman, huffmanCodes, HuffmanError } from '../../control-plane/src/grpc/h2/huffman.ts';
import { UnaryGrpcServer } from '../../control-plane/src/grpc/unary-server.ts';

interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** Splits a byte stream into frames (after an optional client preface). */
function parseFrames(bytes: Buffer, skipPreface: boolean): RawFrame[] {
  let at = skipPreface ? CLIENT_PREFACE.length : 0;
  const frames: RawFrame[] = [];
  while (bytes.length - at >= 9) {
    const length = bytes.readUIntBE(at, 3);
    if (bytes.length - at < 9 + length) break;
    frames.push({ type: bytes[at + 3]!, flags: bytes[at + 4]!, streamId: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}

/** The header blocks of HEADERS (+ CONTINUATION) frames, in wire order, padding and priority removed. */
function headerBlocks(frames: RawFrame[]): Buffer[] {
  const blocks: Buffer[] = [];
  let open: Buffer[] | undefined;
  for (const f of frames) {
    if (f.type === FrameType.HEADERS) {
      let start = 0;
      let end = f.payload.length;
      if (f.flags & Flag.PADDED) {
        start = 1;
        end -= f.payload[0]!;
      }
      if (f.flags & Flag.PRIORITY) start += 5;
      open = [f.payload.subarray(start, end)];
    } else if (f.type === FrameType.CONTINUATION) open!.push(f.payload);
    else continue;
    if (f.flags & Flag.END_HEADERS) {
      blocks.push(Buffer.concat(open!));
      open = undefined;
    }
  }
  return blocks;
}

/**
 * Sends each header set as one request from node:http2's client to a raw listener
 * that advertises `serverSettings`, and returns the bytes the client wrote.
 */
async function captureClientBytes(requests: http2.OutgoingHttpHeaders[], serverSettings: [number, number][] = []): Promise<Buffer> {
  const received: Buffer[] = [];
  const listener = net.createServer((socket) => {
    socket.write(settingsFrame(serverSettings));
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      // ACK the client's SETTINGS so that it applies ours; answer nothing else.
      const all = Buffer.concat(received);
      if (all.length >= CLIENT_PREFACE.length + 9 && !acked) {
        acked = true;
        socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
      }
    });
    socket.on('error', () => {});
  });
  let acked = false;
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const port = (listener.address() as net.AddressInfo).port;
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {});
  try {
    await once(client, 'remoteSettings');
    for (const headers of requests) {
      const stream = client.request(headers, { endStream: true });
      stream.on('error', () => {});
      // One at a time, so that the wire order is the order sent.
      await waitFor(() => headerBlocks(parseFrames(Buffer.concat(received), true)).length >= requests.indexOf(headers) + 1);
    }
  } finally {
    client.destroy();
    listener.close();
  }
  return Buffer.concat(received);
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2_000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.ok(condition(), 'the client never wrote what it was asked to');
}

function decodeAll(decoder: HpackDecoder, block: Buffer): [string, string][] {
  const fields: [string, string][] = [];
  decoder.decode(block, (name, value) => fields.push([name, value]));
  return fields;
}

/** A test-side Huffman encoder (the server never Huffman-encodes), from the same code table. */
function huffmanEncode(bytes: Uint8Array): Buffer {
  const codes = huffmanCodes();
  let bits = '';
  for (const byte of bytes) bits += codes[byte]!.code.toString(2).padStart(codes[byte]!.bits, '0');
  bits += '1'.repeat((8 - (bits.length % 8)) % 8);
  return Buffer.from(bits.match(/.{8}/g)?.map((b) => parseInt(b, 2)) ?? []);
}

test('huffman: the code built from the lengths is complete, and decodes what it encodes for every byte', () => {
  const codes = huffmanCodes();
  assert.equal(codes.length, 257);
  // Kraft's sum of a complete prefix code is exactly 1: no length may be off.
  const kraft = codes.reduce((sum, { bits }) => sum + 2 ** (30 - bits), 0);
  assert.equal(kraft, 2 ** 30);
  assert.deepEqual(codes[256], { code: 2 ** 30 - 1, bits: 30 }, 'EOS is thirty ones');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const encoded = huffmanEncode(bytes);
      assert.equal(decodeHuffman(encoded, 0, encoded.length), Buffer.from(bytes).toString('latin1'));
    }),
    { numRuns: 500, seed: 3 },
  );
  // Padding longer than 7 bits, padding with a zero bit, and EOS itself are errors (RFC 7541 §5.2).
  assert.throws(() => decodeHuffman(Buffer.from([0xff]), 0, 1), HuffmanError);
  assert.throws(() => decodeHuffman(Buffer.from([0x00, 0xfe]), 0, 2), HuffmanError); // '0' then a pad ending in 0
  assert.throws(() => decodeHuffman(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), HuffmanError);
});

test('huffman: the table matches nghttp2 for every byte node:http2 will send in a header value', async () => {
  // nghttp2 Huffman-codes a string when that is shorter: ten '0's (5 bits each)
  // make room for any one code, so every probe below is sent Huffman-coded.
  const sendable = [0x09, ...Array.from({ length: 0x7f - 0x20 }, (_, i) => 0x20 + i), ...Array.from({ length: 0x80 }, (_, i) => 0x80 + i)];
  const values = sendable.map((byte) => '0000000000' + String.fromCharCode(byte) + '0000000000');
  const wire = await captureClientBytes([{ ':method': 'POST', ':path': '/probe', ...Object.fromEntries(values.map((v, i) => [`x-probe-${i}`, v])) }]);
  const [block] = headerBlocks(parseFrames(wire, true));
  const fields = new Map(decodeAll(new HpackDecoder(), block!));
  values.forEach((value, i) => assert.equal(fields.get(`x-probe-${i}`), value, `byte 0x${sendable[i]!.toString(16)}`));
  // The probe is only a probe if nghttp2 did Huffman-code: the block is shorter than the raw names and values.
  const raw = values.reduce((n, v, i) => n + v.length + `x-probe-${i}`.length, 0);
  assert.ok(block!.length < raw, `block ${block!.length} bytes, raw ${raw}`);
});

test('hpack: generated header sets from nghttp2 decode exactly, dynamic table, eviction and size updates included', async () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).filter((n) => !['te', 'connection', 'host', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'].includes(n));
  const value = fc.oneof(fc.stringMatching(/^[\x20-\x7e]{0,60}$/), fc.constantFrom('application/grpc', 'trailers', '200m', 'gzip, deflate', ''), fc.stringMatching(/^[\x20-\x7e]{100,400}$/));
  const headerSet = fc.dictionary(name, value, { maxKeys: 12 });
  const staticNames = fc.subarray(STATIC_TABLE.map(([n]) => n).filter((n) => !n.startsWith(':') && !['transfer-encoding', 'host'].includes(n)), { maxLength: 6 });
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(headerSet, staticNames), { minLength: 1, maxLength: 12 }), fc.constantFrom(4096, 256, 0), async (sets, tableSize) => {
      const requests = sets.map(([custom, known], i) => ({ ':method': 'POST', ':path': `/svc/m${i % 3}`, ...Object.fromEntries(known.map((n) => [n, `v-${n}`])), ...custom }));
      const wire = await captureClientBytes(requests, tableSize === 4096 ? [] : [[Setting.HEADER_TABLE_SIZE, tableSize]]);
      const blocks = headerBlocks(parseFrames(wire, true));
      assert.equal(blocks.length, requests.length);
      if (tableSize !== 4096) assert.equal(blocks[0]![0]! & 0xe0, 0x20, 'nghttp2 opened with a table size update');
      const decoder = new HpackDecoder(4096);
      blocks.forEach((block, i) => {
        const decoded = new Map(decodeAll(decoder, block));
        for (const [key, sent] of Object.entries(requests[i]!)) {
          if (key === 'cookie') continue; // node may split cookies
          assert.equal(decoded.get(key), String(sent), `request ${i} header ${key}`);
        }
      });
    }),
    { numRuns: 25, seed: 5 },
  );
});

/** An HPACK integer with an N-bit prefix under `flags` (RFC 7541 §5.1), for hand-built blocks. */
function hpackInteger(value: number, prefixBits: number, flags: number): number[] {
  const max = 2 ** prefixBits - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  for (let rest = value - max; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) return [...out, rest];
    out.push((rest % 128) | 0x80);
  }
}

/** A literal with incremental indexing and a new name (RFC 7541 §6.2.1), raw strings. */
function indexedLiteral(name: string, value: string): number[] {
  return [0x40, ...hpackInteger(name.length, 7, 0), ...Buffer.from(name), ...hpackInteger(value.length, 7, 0), ...Buffer.from(value)];
}

test('hpack: the dynamic table holds exactly its size in entries (32 octets of overhead each), evicting oldest first', () => {
  const decoder = new HpackDecoder(4096);
  // Four entries of 32 + 1 + 991 = 1,024 octets fill a 4,096-octet table exactly.
  const fill = ['a', 'b', 'c', 'd'].flatMap((name) => indexedLiteral(name, name.repeat(991)));
  decodeAll(decoder, Buffer.from(fill));
  // Index 62 is the newest entry, 65 the oldest: all four are still there.
  assert.deepEqual(decodeAll(decoder, Buffer.from([0x80 | 62, 0x80 | 65])).map(([n]) => n), ['d', 'a']);
  // Three octets less room pushes the oldest out: 'b' is now the oldest, at 64.
  assert.deepEqual(decodeAll(decoder, Buffer.from([...hpackInteger(4093, 5, 0x20), 0x80 | 64])).map(([n]) => n), ['b']);
  assert.throws(() => decodeAll(decoder, Buffer.from([0x80 | 65])), HpackError, "'a' was evicted");
  // A 33-octet entry in a table with 2 octets to spare pushes 'b' out.
  decodeAll(decoder, Buffer.from([...hpackInteger(3074, 5, 0x20), ...indexedLiteral('e', '')]));
  assert.deepEqual(decodeAll(decoder, Buffer.from([0x80 | 62, 0x80 | 64])).map(([n]) => n), ['e', 'c']);
  assert.throws(() => decodeAll(decoder, Buffer.from([0x80 | 65])), HpackError, "'b' was evicted");
  // A size update to 0 empties it; an entry larger than the table empties it too and is not kept.
  assert.throws(() => decodeAll(decoder, Buffer.from([0x20, 0x80 | 62])), HpackError);
  decodeAll(decoder, Buffer.from([0x3f, 0xe1, 0x1f, ...indexedLiteral('f', 'f'.repeat(5000))]));
  assert.throws(() => decodeAll(decoder, Buffer.from([0x80 | 62])), HpackError);
});

test('hpack: malformed blocks throw HpackError, never hang or read past the block', () => {
  const decoder = () => new HpackDecoder();
  assert.throws(() => decodeAll(decoder(), Buffer.from([0x80])), HpackError, 'index 0');
  assert.throws(() => decodeAll(decoder(), Buffer.from([0xbe])), HpackError, 'index 62 with an empty dynamic table');
  assert.throws(() => decodeAll(decoder(), Buffer.from([0x3f, 0xe2, 0x1f])), HpackError, 'table size above the advertised 4096');
  assert.throws(() => decodeAll(decoder(), Buffer.from([0x82, 0x20])), HpackError, 'size update after a field');
  assert.throws(() => decodeAll(decoder(), Buffer.from([0x00, 0x05, 0x61])), HpackError, 'string past the end');
  assert.throws(() => decodeAll(decoder(), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), HpackError, 'endless integer');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeAll(decoder(), Buffer.from(bytes));
      } catch (error) {
        assert.ok(error instanceof HpackError, String(error));
      }
    }),
    { numRuns: 2_000, seed: 9 },
  );
  // The encoder's blocks decode to what it was given.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.stringMatching(/^[a-z:-]{1,20}$/), fc.stringMatching(/^[\x20-\x7e]{0,300}$/)), { maxLength: 10 }), (fields) => {
      assert.deepEqual(decodeAll(decoder(), encodeHeaderBlock(fields)), fields);
    }),
    { numRuns: 300, seed: 10 },
  );
});

// ---- the connection, through the server ----

const ECHO = '/test.Echo/Big';
const server = new UnaryGrpcServer({ maxMessageBytes: 256 * 1024 }).handle(ECHO, async (bytes) => {
  // The answer is the request repeated, so large answers need the peer's window to open.
  const times = bytes.length === 0 ? 0 : Math.ceil((bytes[0]! * 1024) / bytes.length);
  return Buffer.concat(Array.from({ length: times }, () => bytes));
});
const port = await server.listen('127.0.0.1', 0);
after(() => server.close(200));

async function call(session: http2.ClientHttp2Session, message: Buffer): Promise<{ status: string | undefined; body: Buffer }> {
  const stream = session.request({ ':method': 'POST', ':path': ECHO, 'content-type': 'application/grpc', te: 'trailers' });
  const chunks: Buffer[] = [];
  let status: string | undefined;
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('trailers', (t) => (status = String(t['grpc-status'])));
  stream.end(frameMessage(message));
  await once(stream, 'close');
  return { status, body: Buffer.concat(chunks) };
}

test('connection: answers larger than the client\'s windows and frame size arrive whole, many at once', async () => {
  // A small stream window and connection window force the server to hold DATA back and send it as WINDOW_UPDATEs arrive.
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 3_000 } });
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 200 }), fc.uint8Array({ minLength: 1, maxLength: 5_000 })), { minLength: 1, maxLength: 8 }), async (asks) => {
        const messages = asks.map(([kib, rest]) => Buffer.concat([Buffer.from([kib]), rest]));
        const answers = await Promise.all(messages.map((m) => call(session, m)));
        answers.forEach((answer, i) => {
          const m = messages[i]!;
          const expected = Buffer.concat(Array.from({ length: Math.ceil((m[0]! * 1024) / m.length) }, () => m));
          assert.equal(answer.status, '0');
          assert.equal(answer.body.readUInt32BE(1), expected.length);
          assert.ok(answer.body.subarray(5).equals(expected));
        });
      }),
      { numRuns: 15, seed: 21 },
    );
  } finally {
    session.close();
  }
});

/** Opens a raw connection, sends `bytes`, and returns every frame the server sent until it closed. */
async function rawExchange(bytes: Buffer): Promise<RawFrame[]> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (c: Buffer) => received.push(c));
  socket.write(bytes);
  await once(socket, 'close');
  return parseFrames(Buffer.concat(received), false);
}

const CLIENT_START = Buffer.concat([CLIENT_PREFACE, settingsFrame([])]);

function goawayCode(frames: RawFrame[]): number | undefined {
  const goaway = frames.find((f) => f.type === FrameType.GOAWAY);
  return goaway?.payload.readUInt32BE(4);
}

test('connection: protocol errors end only that connection, with GOAWAY and the right code', async () => {
  const healthy = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const requestBlock = encodeHeaderBlock([[':method', 'POST'], [':path', ECHO], ['content-type', 'application/grpc']]);
    const cases: [string, Buffer, number | undefined][] = [
      ['not HTTP/2 at all', Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'), undefined],
      ['first frame not SETTINGS', Buffer.concat([CLIENT_PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(8))]), ErrorCode.PROTOCOL_ERROR],
      ['frame larger than 16,384 bytes', Buffer.concat([CLIENT_START, frame(FrameType.DATA, 0, 1, Buffer.alloc(20_000))]), ErrorCode.FRAME_SIZE_ERROR],
      ['garbage header block', Buffer.concat([CLIENT_START, frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80]))]), ErrorCode.COMPRESSION_ERROR],
      ['even stream id', Buffer.concat([CLIENT_START, frame(FrameType.HEADERS, Flag.END_HEADERS, 2, requestBlock)]), ErrorCode.PROTOCOL_ERROR],
      ['DATA on an idle stream', Buffer.concat([CLIENT_START, frame(FrameType.DATA, 0, 5, Buffer.alloc(3))]), ErrorCode.PROTOCOL_ERROR],
      ['frame between HEADERS and CONTINUATION', Buffer.concat([CLIENT_START, frame(FrameType.HEADERS, 0, 1, requestBlock), frame(FrameType.PING, 0, 0, Buffer.alloc(8))]), ErrorCode.PROTOCOL_ERROR],
      ['PUSH_PROMISE from a client', Buffer.concat([CLIENT_START, frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.alloc(4))]), ErrorCode.PROTOCOL_ERROR],
      ['SETTINGS of the wrong length', Buffer.concat([CLIENT_START, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5))]), ErrorCode.FRAME_SIZE_ERROR],
      ['connection window past 2^31-1', Buffer.concat([CLIENT_START, frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff]))]), ErrorCode.FLOW_CONTROL_ERROR],
    ];
    for (const [what, bytes, code] of cases) {
      const frames = await rawExchange(bytes);
      assert.equal(goawayCode(frames), code, what);
      const answer = await call(healthy, Buffer.from([1, 2, 3]));
      assert.equal(answer.status, '0', `a healthy connection still works after: ${what}`);
    }
  } finally {
    healthy.close();
  }
});

test('connection: a request split into HEADERS + CONTINUATION with padding, and a PING, are answered', async () => {
  const block = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', ECHO], ['content-type', 'application/grpc'], ['te', 'trailers']]);
  const padded = Buffer.concat([Buffer.from([3]), block.subarray(0, 10), Buffer.alloc(3)]);
  const data = frameMessage(Buffer.from([1, 9, 9]));
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (c: Buffer) => received.push(c));
  socket.write(
    Buffer.concat([
      CLIENT_START,
      frame(FrameType.PING, 0, 0, Buffer.from('pingpong')),
      frame(FrameType.HEADERS, Flag.PADDED, 1, padded),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(10)),
      frame(FrameType.DATA, Flag.END_STREAM, 1, data),
    ]),
  );
  try {
    await waitFor(() => parseFrames(Buffer.concat(received), false).some((f) => f.type === FrameType.HEADERS && f.flags & Flag.END_STREAM));
    const frames = parseFrames(Buffer.concat(received), false);
    const pong = frames.find((f) => f.type === FrameType.PING && f.flags & Flag.ACK);
    assert.equal(pong?.payload.toString(), 'pingpong');
    const decoder = new HpackDecoder();
    const blocks = headerBlocks(frames.filter((f) => f.streamId === 1)).map((b) => new Map(decodeAll(decoder, b)));
    assert.equal(blocks[0]!.get(':status'), '200');
    assert.equal(blocks.at(-1)!.get('grpc-status'), '0');
    const body = Buffer.concat(frames.filter((f) => f.type === FrameType.DATA && f.streamId === 1).map((f) => f.payload));
    assert.equal(body.readUInt32BE(1), 342 * 3, 'ceil(1024 / 3) copies of the 3-byte request');
  } finally {
    socket.destroy();
  }
});

test('connection: generated frame sequences never take the server down, and a healthy client is served after each', async () => {
  const healthy = http2.connect(`http://127.0.0.1:${port}`);
  const anyFrame = fc
    .record({
      type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 10, max: 255 })),
      flags: fc.oneof(fc.constantFrom(0, Flag.END_STREAM, Flag.END_HEADERS, Flag.END_HEADERS | Flag.END_STREAM, Flag.PADDED | Flag.END_HEADERS, Flag.PRIORITY | Flag.END_HEADERS), fc.integer({ min: 0, max: 255 })),
      streamId: fc.oneof(fc.constantFrom(0, 1, 3, 5), fc.integer({ min: 0, max: 2 ** 31 - 1 })),
      payload: fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        fc.constant(encodeHeaderBlock([[':method', 'POST'], [':path', ECHO], ['content-type', 'application/grpc']])),
        fc.constant(frameMessage(Buffer.from([1, 2]))),
      ),
    })
    .map((f) => frame(f.type, f.flags, f.streamId, f.payload));
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(anyFrame, { maxLength: 12 }), fc.boolean(), async (frames, withStart) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.resume();
        socket.write(Buffer.concat([withStart ? CLIENT_START : Buffer.alloc(0), ...frames]));
        // Give the server the bytes, then leave; whatever it made of them, it must still serve others.
        await new Promise((resolve) => setTimeout(resolve, 5));
        socket.destroy();
        const answer = await call(healthy, Buffer.from([1, 7]));
        assert.equal(answer.status, '0');
      }),
      { numRuns: 150, seed: 33 },
    );
  } finally {
    healthy.close();
  }
});
