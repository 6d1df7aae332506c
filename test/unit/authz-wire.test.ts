// The lean CheckRequest decoder (authz/wire.ts) against protobufjs's full decode
// of the same bytes: on every generated CheckRequest they must agree on all the
// service reads (the headers decide() reads, the path, the route's
// context_extensions), whatever else the request carries. And the field-by-field
// CheckResponse writer against protobufjs's full encoder: the same bytes on every
// response response.ts can build and on generated ones with every field it writes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { readsHeader, type Decision } from '../../control-plane/src/authz/decide.ts';
import type { AuthFailure } from '../../control-plane/src/authz/failure.ts';
import { checkResponse, deniedResponse } from '../../control-plane/src/authz/response.ts';
import { decodeCheckRequest, encodeCheckResponse, type WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import type { CheckResponse } from '../../control-plane/src/proto/codec.ts';
import { messageType } from '../../control-plane/src/proto/envoy.ts';

const requestType = messageType('envoy.service.auth.v3.CheckRequest');
const responseType = messageType('envoy.service.auth.v3.CheckResponse');

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

  it('on every cut of a generated request either throws a RangeError or reads what protobufjs reads (fast-check, 300 requests)', () => {
    fc.assert(
      fc.property(checkRequest, fc.nat(), (message, at) => {
        const bytes = requestType.encode(requestType.fromObject(message)).finish();
        const cut = bytes.subarray(0, bytes.length === 0 ? 0 : at % bytes.length);
        let lean: WireCheckRequest;
        try {
          lean = decodeCheckRequest(cut);
        } catch (error) {
          assert.ok(error instanceof RangeError, String(error));
          return;
        }
        // A cut on a field boundary is a shorter, well-formed request.
        assert.deepEqual(serviceView(lean), serviceView(fullDecode(cut)));
      }),
      { numRuns: 300, seed: 4_711 },
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

// ---- CheckResponse ------------------------------------------------------------------

function fullEncode(response: CheckResponse): Buffer {
  return Buffer.from(responseType.encode(responseType.fromObject(response as Record<string, unknown>)).finish());
}

function assertSameBytes(response: CheckResponse): void {
  assert.deepEqual(Buffer.from(encodeCheckResponse(response)), fullEncode(response));
}

/** Header names and values as a client or a claim could make them: non-ASCII, empty, odd. */
const headerText = fc.oneof(text, fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/), fc.constantFrom('', 'x-sluice-consumer', 'Ünïcödé', '\u{1F600}', 'a\u0000b'));
const pairs = fc.array(fc.tuple(headerText, headerText), { maxLength: 6 });
const names = fc.array(headerText, { maxLength: 6 });

const failure: fc.Arbitrary<AuthFailure> = fc.record(
  {
    status: fc.constantFrom<AuthFailure['status']>(400, 401, 403),
    error: fc.constantFrom<NonNullable<AuthFailure['error']>>('invalid_request', 'invalid_token', 'insufficient_scope'),
    description: text,
    reason: text,
    scope: text,
  },
  { requiredKeys: ['status', 'description', 'reason'] },
);

const decision: fc.Arbitrary<Decision> = fc.oneof(
  fc.record({
    allow: fc.constant(true as const),
    identity: fc.record(
      { mode: fc.constantFrom<'jwt' | 'api_key'>('jwt', 'api_key'), consumer: headerText, credential: headerText, scopes: names },
      { requiredKeys: ['mode', 'scopes'] },
    ),
    setHeaders: pairs,
    removeHeaders: names,
    removeQuery: names,
    reason: text,
    validity: fc.constant({ untilMs: Infinity }),
  }),
  fc.record({ allow: fc.constant(false as const), failure }),
);

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const headerOption = fc.record(
  {
    header: fc.record({ key: headerText, value: headerText, raw_value: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)) }, { requiredKeys: [] }),
    append: fc.record({ value: fc.boolean() }, { requiredKeys: [] }),
    append_action: fc.constantFrom('APPEND_IF_EXISTS_OR_ADD', 'ADD_IF_ABSENT', 'OVERWRITE_IF_EXISTS_OR_ADD', 'OVERWRITE_IF_EXISTS', 0, 1, 2, 3),
    keep_empty_value: fc.boolean(),
  },
  { requiredKeys: [] },
);
const headerOptions = fc.array(headerOption, { maxLength: 4 });

/** google.protobuf.Struct, nested a little (protobufjs's camelCase Value fields). */
const { struct } = fc.letrec<{ struct: Record<string, unknown>; value: Record<string, unknown> }>((tie) => ({
  struct: fc.record({ fields: fc.dictionary(headerText, tie('value'), { maxKeys: 4 }) }, { requiredKeys: [] }),
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ stringValue: headerText }),
    fc.record({ numberValue: fc.double() }),
    fc.record({ boolValue: fc.boolean() }),
    fc.record({ nullValue: fc.constantFrom('NULL_VALUE', 0) }),
    fc.record({ structValue: tie('struct') }),
    fc.record({ listValue: fc.record({ values: fc.array(tie('value'), { maxLength: 3 }) }, { requiredKeys: [] }) }),
  ),
}));

/** Every field the lean writer writes, each possibly absent. */
const anyResponse = fc.record(
  {
    status: fc.record({ code: int32, message: text }, { requiredKeys: [] }),
    denied_response: fc.record(
      { status: fc.record({ code: fc.integer({ min: 0, max: 599 }) }, { requiredKeys: [] }), headers: headerOptions, body: text },
      { requiredKeys: [] },
    ),
    ok_response: fc.record(
      {
        headers: headerOptions,
        dynamic_metadata: struct,
        headers_to_remove: names,
        response_headers_to_add: headerOptions,
        query_parameters_to_set: fc.array(fc.record({ key: headerText, value: headerText }, { requiredKeys: [] }), { maxLength: 3 }),
        query_parameters_to_remove: names,
      },
      { requiredKeys: [] },
    ),
    dynamic_metadata: struct,
  },
  { requiredKeys: [] },
) as fc.Arbitrary<CheckResponse>;

describe('authz wire: the lean CheckResponse writer', () => {
  it('writes the bytes the full encoder writes for every response response.ts builds (fast-check, 1,000 decisions)', () => {
    fc.assert(
      fc.property(decision, (d) => assertSameBytes(checkResponse(d))),
      { numRuns: 1_000, seed: 4_242 },
    );
    fc.assert(
      fc.property(failure, (f) => assertSameBytes(deniedResponse(f))),
      { numRuns: 300, seed: 4_243 },
    );
  });

  it('writes the bytes the full encoder writes for generated responses with every field it writes (fast-check, 1,000 responses)', () => {
    fc.assert(
      fc.property(anyResponse, (response) => assertSameBytes(response)),
      { numRuns: 1_000, seed: 4_244 },
    );
  });

  it('writes set-but-empty values and the service\'s 503 as the full encoder does', () => {
    assertSameBytes({});
    assertSameBytes({ status: {}, ok_response: {}, dynamic_metadata: {} });
    assertSameBytes({ status: { code: 0, message: '' }, ok_response: { headers: [], headers_to_remove: [''], dynamic_metadata: { fields: {} } } });
    assertSameBytes({
      status: { code: 14, message: 'no_state' },
      denied_response: { status: { code: 503 }, headers: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }], body: '{"error":"unavailable"}' },
    });
  });

  it('refuses what it does not write instead of writing something else', () => {
    assert.throws(() => encodeCheckResponse({ status: { code: 0, details: [{ type_url: 'type.googleapis.com/x', value: Buffer.from('') }] } }), TypeError);
    assert.throws(() => encodeCheckResponse({ denied_response: { status: { code: 'Unauthorized' } } }), TypeError);
    assert.throws(() => encodeCheckResponse({ ok_response: { headers: [{ header: { key: 'a', raw_value: 'YQ==' } }] } }), TypeError);
  });
});
