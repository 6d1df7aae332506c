// The unary gRPC server on loopback, judged by real clients: grpc-js (an
// independent gRPC implementation) for the protocol, raw node:http2 and raw TCP
// for what a well-behaved client never sends.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { decodeGrpcMessage, frameMessage, GrpcStatus } from '../../control-plane/src/grpc/framing.ts';
import { GrpcError, UnaryGrpcServer } from '../../control-plane/src/grpc/unary-server.ts';

const ECHO = '/test.Echo/Reverse';
const SLOW = '/test.Echo/Slow';
const THROWS = '/test.Echo/Throws';
const REFUSES = '/test.Echo/Refuses';
const MAX_MESSAGE_BYTES = 4_096;

/** The handler's answer: the bytes reversed, so a response cannot be the request echoed by mistake. */
const reverse = (bytes: Buffer) => Uint8Array.from(bytes).reverse();

const handlerErrors: unknown[] = [];
let releaseSlow: (() => void) | undefined;
const server = new UnaryGrpcServer({ maxMessageBytes: MAX_MESSAGE_BYTES, keepaliveMs: 200, keepaliveTimeoutMs: 200, onHandlerError: (_path, err) => handlerErrors.push(err) })
  .handle(ECHO, async (bytes) => reverse(bytes))
  .handle(SLOW, (bytes) => new Promise((resolve) => (releaseSlow = () => resolve(reverse(bytes)))))
  .handle(THROWS, () => {
    throw new Error('handler broke');
  })
  .handle(REFUSES, async () => {
    throw new GrpcError(GrpcStatus.INVALID_ARGUMENT, 'bad request: 100% wrong');
  });
const port = await server.listen('127.0.0.1', 0);
after(() => server.close(500));

const identity = (b: Buffer) => b;
const definition: grpc.ServiceDefinition = Object.fromEntries(
  [ECHO, SLOW, THROWS, REFUSES, '/test.Echo/Missing'].map((path) => [
    path.split('/')[2]!,
    { path, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  ]),
);
const Client = grpc.makeGenericClientConstructor(definition, 'Echo');

function call(client: grpc.Client, method: string, request: Buffer, options: grpc.CallOptions = {}): Promise<{ error?: grpc.ServiceError; response?: Buffer }> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, (req: Buffer, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => void>)[method]!;
    fn.call(client, request, new grpc.Metadata(), options, (error, response) => resolve(error ? { error } : { response: response! }));
  });
}

test('unary server: generated requests, many in flight on one connection, each gets its own answer', async () => {
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: MAX_MESSAGE_BYTES }), { minLength: 1, maxLength: 40 }), async (messages) => {
        const answers = await Promise.all(messages.map((m) => call(client, 'Reverse', Buffer.from(m))));
        answers.forEach((answer, i) => {
          assert.equal(answer.error, undefined);
          assert.deepEqual(new Uint8Array(answer.response!), reverse(Buffer.from(messages[i]!)));
        });
      }),
      { numRuns: 60, seed: 7 },
    );
  } finally {
    client.close();
  }
});

test('unary server: statuses for unknown methods, oversized messages, handler errors, chosen errors and deadlines', async () => {
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const missing = await call(client, 'Missing', Buffer.from('x'));
    assert.equal(missing.error?.code, grpc.status.UNIMPLEMENTED);

    const oversized = await call(client, 'Reverse', Buffer.alloc(MAX_MESSAGE_BYTES + 1, 7));
    assert.equal(oversized.error?.code, grpc.status.RESOURCE_EXHAUSTED);
    const atLimit = await call(client, 'Reverse', Buffer.alloc(MAX_MESSAGE_BYTES, 7));
    assert.equal(atLimit.error, undefined);

    const broken = await call(client, 'Throws', Buffer.from('x'));
    assert.equal(broken.error?.code, grpc.status.INTERNAL);
    assert.equal(broken.error?.details, 'internal error', 'the cause is logged, not sent');
    assert.equal((handlerErrors.at(-1) as Error).message, 'handler broke');

    const refused = await call(client, 'Refuses', Buffer.from('x'));
    assert.equal(refused.error?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(refused.error?.details, 'bad request: 100% wrong', 'grpc-message survives percent-encoding');

    // The server answers DEADLINE_EXCEEDED itself; grpc-js would report its own
    // deadline too, so the slow call is made with a raw client below.
    const slowClosed = await call(client, 'Reverse', Buffer.from('after errors'));
    assert.equal(slowClosed.error, undefined, 'errors leave the connection usable');
  } finally {
    client.close();
  }
});

/** One raw HTTP/2 request: the response headers, trailers and body as received. */
async function rawCall(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Buffer[]): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  const stream = session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers }, { endStream: false });
  const chunks: Buffer[] = [];
  let trailers: http2.IncomingHttpHeaders = {};
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('trailers', (t) => (trailers = t));
  const responseHeaders = once(stream, 'response').then(([h]) => h as http2.IncomingHttpHeaders);
  for (const part of body) stream.write(part);
  stream.end();
  await once(stream, 'close');
  return { headers: await responseHeaders, trailers, body: Buffer.concat(chunks) };
}

test('unary server: a message split across any number of DATA frames reads as one; protocol errors get their HTTP or gRPC status', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 8 }), async (message, cuts) => {
        const frame = frameMessage(message);
        const points = [...new Set(cuts.map((c) => c % (frame.length + 1)))].sort((a, b) => a - b);
        const parts = [0, ...points, frame.length].slice(1).map((end, i, ends) => frame.subarray(i === 0 ? 0 : ends[i - 1]!, end)).filter((p) => p.length > 0);
        const answer = await rawCall(session, { ':path': ECHO }, parts);
        assert.equal(answer.trailers['grpc-status'], '0');
        assert.deepEqual(new Uint8Array(answer.body.subarray(5)), reverse(Buffer.from(message)));
      }),
      { numRuns: 60, seed: 11 },
    );

    const twoMessages = await rawCall(session, { ':path': ECHO }, [frameMessage(Buffer.from('a')), frameMessage(Buffer.from('b'))]);
    assert.equal(twoMessages.headers['grpc-status'], String(GrpcStatus.UNIMPLEMENTED));
    const noMessage = await rawCall(session, { ':path': ECHO }, []);
    assert.equal(noMessage.headers['grpc-status'], String(GrpcStatus.INTERNAL));
    const gzip = await rawCall(session, { ':path': ECHO, 'grpc-encoding': 'gzip' }, [frameMessage(Buffer.from('a'))]);
    assert.equal(gzip.headers['grpc-status'], String(GrpcStatus.UNIMPLEMENTED));
    assert.equal(gzip.headers['grpc-accept-encoding'], 'identity');
    const notGrpc = await rawCall(session, { ':path': ECHO, 'content-type': 'application/json' }, [Buffer.from('{}')]);
    assert.equal(notGrpc.headers[':status'], 415);
    const notPost = session.request({ ':method': 'GET', ':path': ECHO });
    const [getHeaders] = await once(notPost, 'response');
    notPost.resume();
    assert.equal((getHeaders as http2.IncomingHttpHeaders)[':status'], 405);

    const slow = await rawCall(session, { ':path': SLOW, 'grpc-timeout': '50m' }, [frameMessage(Buffer.from('late'))]);
    assert.equal(slow.headers['grpc-status'], String(GrpcStatus.DEADLINE_EXCEEDED));
    assert.equal(decodeGrpcMessage(String(slow.headers['grpc-message'])), 'deadline exceeded');
    releaseSlow?.(); // the late answer finds the stream answered and is dropped
  } finally {
    session.close();
  }
});

test('unary server: a client that stalls mid-message or never answers pings costs only itself', { timeout: 20_000 }, async () => {
  // A stream that declares 100 bytes and sends 3, then waits forever.
  const stalled = http2.connect(`http://127.0.0.1:${port}`);
  const stalledStream = stalled.request({ ':method': 'POST', ':path': ECHO, 'content-type': 'application/grpc' }, { endStream: false });
  stalledStream.on('error', () => {});
  stalledStream.write(Buffer.concat([Buffer.from([0, 0, 0, 0, 100]), Buffer.from('abc')]));

  // A raw TCP peer that opens HTTP/2, then answers nothing: no SETTINGS ack, no ping ack.
  // (It reads and discards, or it could not see the server close the connection.)
  const mute = net.connect(port, '127.0.0.1');
  await once(mute, 'connect');
  mute.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  mute.resume();
  const muteClosed = once(mute, 'close');

  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => call(client, 'Reverse', Buffer.from(`call ${i}`))));
    for (const [i, answer] of answers.entries()) assert.deepEqual(answer.response, Buffer.from(reverse(Buffer.from(`call ${i}`))));
    // keepaliveMs 200 + keepaliveTimeoutMs 200: the server drops the mute peer; the test waits for it (no clock assertion).
    await muteClosed;
  } finally {
    client.close();
    stalled.destroy();
    mute.destroy();
  }
});

test('unary server: close lets a call in flight finish, then refuses new connections', async () => {
  const own = new UnaryGrpcServer().handle(SLOW, (bytes) => new Promise((resolve) => setTimeout(() => resolve(reverse(bytes)), 100)));
  const ownPort = await own.listen('127.0.0.1', 0);
  const client = new Client(`127.0.0.1:${ownPort}`, grpc.credentials.createInsecure());
  try {
    const inFlight = call(client, 'Slow', Buffer.from('finish me'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    const closed = own.close(5_000);
    const answer = await inFlight;
    assert.equal(answer.error, undefined);
    assert.deepEqual(answer.response, Buffer.from(reverse(Buffer.from('finish me'))));
    await closed;
    const refused = await call(client, 'Slow', Buffer.from('too late'), { deadline: Date.now() + 2_000 });
    assert.equal(refused.error?.code, grpc.status.UNAVAILABLE);
  } finally {
    client.close();
  }
});
