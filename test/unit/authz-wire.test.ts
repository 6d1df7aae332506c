// The lean CheckRequest decoder (authz/wire.ts) against protobufjs's full decode
// of the same bytes: on every generated CheckRequest they must agree on all the
// service reads (the headers decide() reads, the path, the route's
// context_extensions), whatever else the request carries.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { readsHeader } from '../../control-plane/src/authz/decide.ts';
import { decodeCheckRequest, type WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import { messageType } from '../../control-plane/src/proto/envoy.ts';

const requestType = messageType('envoy.service.auth.v3.CheckRequest');

/** What AuthzService.check reads of a request, in the same expressions it uses. */
function serviceView(request: WireCheckRequest | null | undefined) {
  const attributes = request?.attributes ?? {};
  const http = attributes.request?.http;
  const sorted = (record: Record<string, string> | null | undefined) => Object.entries(record ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    headers: sorted(http?.headers).filter(([name]) => readsHeader(name)),
    path: http?.path ?? '/',
    context: sorted(attributes.context_extensions),
  };
}

function fullDecode(bytes: Uint8Array): WireCheckRequest {
  return requestType.decode(bytes) as unknown as WireCheckRequest;
}

const headerName = fc.oneof(
  fc.constantFrom('authorization', 'x-api-key', 'x-sluice-consumer', 'x-sluice-anything', 'x-user-id', 'x-consumer-id', 'cookie', ':path', ':authority', 'x-api-keys', 'authorizatio'),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
  fc.string({ maxLength: 12 }),
);
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.constant(''));
const stringMap = (key: fc.Arbitrary<string>) => fc.array(fc.tuple(key, text), { maxLength: 12 }).map((entries) => Object.fromEntries(entries));
const socket = fc.record({ address: fc.record({ socket_address: fc.record({ address: fc.ipV4(), port_value: fc.nat(65_535) }) }) }, { requiredKeys: [] });

/** CheckRequests as Envoy could send them, every field optional, with fields the service never reads around the ones it does. */
const checkRequest = fc.record(
  {
    attributes: fc.record(
      {
        source: socket,
        destination: socket,
        request: fc.record(
          {
            time: fc.record({ seconds: fc.nat(), nanos: fc.nat(999_999_999) }),
            http: fc.record(
              {
                id: text,
                method: fc.constantFrom('GET', 'POST', 'DELETE'),
                headers: stringMap(headerName),
                path: text,
                host: text,
                scheme: fc.constantFrom('http', 'https'),
                query: text,
                size: fc.nat(),
                protocol: fc.constantFrom('HTTP/1.1', 'HTTP/2'),
                body: text,
              },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        ),
        context_extensions: stringMap(fc.oneof(fc.constantFrom('sluice_route', 'sluice_auth_mode', 'sluice_scopes'), fc.string({ maxLength: 12 }))),
        metadata_context: fc.record({ filter_metadata: fc.dictionary(fc.string({ maxLength: 8 }), fc.constant({ fields: { k: { stringValue: 'v' } } }), { maxKeys: 2 }) }),
        tls_session: fc.record({ sni: text }),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

describe('authz wire: the lean CheckRequest decoder', () => {
  it('agrees with the full protobufjs decode on everything the service reads (fast-check, 2,000 requests)', () => {
    fc.assert(
      fc.property(checkRequest, (message) => {
        const bytes = requestType.encode(requestType.fromObject(message)).finish();
        const lean = decodeCheckRequest(bytes);
        assert.deepEqual(serviceView(lean), serviceView(fullDecode(bytes)));
        // Only headers decide() reads are kept at all.
        for (const name of Object.keys(lean.attributes?.request?.http?.headers ?? {})) assert.ok(readsHeader(name), name);
      }),
      { numRuns: 2_000, seed: 90_210 },
    );
  });

  /** A header map entry written by hand (field order and odd keys protobufjs's encoder would not produce). */
  function withHeaderEntry(write: (entry: protobuf.Writer) => void, path = '/p?q=1'): Uint8Array {
    const entry = protobuf.Writer.create();
    write(entry);
    const http = protobuf.Writer.create().uint32((3 << 3) | 2).bytes(entry.finish()).uint32((4 << 3) | 2).string(path);
    const request = protobuf.Writer.create().uint32((2 << 3) | 2).bytes(http.finish());
    const attributes = protobuf.Writer.create().uint32((4 << 3) | 2).bytes(request.finish());
    return protobuf.Writer.create().uint32((1 << 3) | 2).bytes(attributes.finish()).finish();
  }

  it('reads a map entry whose value comes before its key, and a header named __proto__ as an ordinary key', () => {
    const valueFirst = withHeaderEntry((e) => e.uint32((2 << 3) | 2).string('sk_value').uint32((1 << 3) | 2).string('x-api-key'));
    assert.deepEqual(serviceView(decodeCheckRequest(valueFirst)), serviceView(fullDecode(valueFirst)));
    assert.equal(decodeCheckRequest(valueFirst).attributes?.request?.http?.headers?.['x-api-key'], 'sk_value');
    const proto = withHeaderEntry((e) => e.uint32((1 << 3) | 2).string('__proto__').uint32((2 << 3) | 2).string('x'));
    const headers = decodeCheckRequest(proto).attributes?.request?.http?.headers ?? {};
    assert.equal(Object.getPrototypeOf(headers), null);
    assert.deepEqual(Object.keys(headers), []); // not a header decide() reads, and no prototype was touched
  });

  it('throws on truncated input instead of reading past it', () => {
    const bytes = withHeaderEntry((e) => e.uint32((1 << 3) | 2).string('authorization').uint32((2 << 3) | 2).string('Bearer abc'));
    for (const cut of [bytes.length - 1, bytes.length - 5, 3]) assert.throws(() => decodeCheckRequest(bytes.subarray(0, cut)), RangeError);
    // A key claiming 46 bytes inside a 5-byte entry: its 3 bytes plus the whole path
    // field after the entry (tag, length, 41 bytes), which it would swallow silently.
    const overrun = withHeaderEntry((e) => e.uint32((1 << 3) | 2).uint32(46).uint32(0x61).uint32(0x62).uint32(0x63), `/${'a'.repeat(40)}`);
    assert.throws(() => decodeCheckRequest(overrun), RangeError);
  });
});
