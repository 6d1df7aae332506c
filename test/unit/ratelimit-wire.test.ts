// The rate-limit service's lean codec (control-plane/src/ratelimit/wire.ts) against
// protobufjs' full codec of the same Envoy messages: generated responses (and the
// ones responses.ts builds) encode to the same bytes; generated requests decode to
// what the service reads the same way; truncated or garbage bytes throw or decode,
// never hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import type { RateLimitPolicy } from '../../control-plane/src/model/index.ts';
import { messageType } from '../../control-plane/src/proto/envoy.ts';
import type { PlannedCounter } from '../../control-plane/src/ratelimit/descriptors.ts';
import { countedResponse, unavailableResponse } from '../../control-plane/src/ratelimit/responses.ts';
import type { CounterVerdict } from '../../control-plane/src/ratelimit/window.ts';
import { decodeRateLimitRequest, encodeRateLimitResponse } from '../../control-plane/src/ratelimit/wire.ts';
import type { RateLimitRequest, RateLimitResponse } from '../../control-plane/src/proto/codec.ts';

const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');
const requestType = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const asObject = { longs: String, enums: String, bytes: Buffer, defaults: false, arrays: true } as const;

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });

const code = fc.constantFrom<'OK' | 'OVER_LIMIT' | 'UNKNOWN'>('OK', 'OVER_LIMIT', 'UNKNOWN');

/** Responses with the fields the service sets, each possibly absent. */
const response: fc.Arbitrary<RateLimitResponse> = fc.record(
  {
    overall_code: code,
    statuses: fc.array(
      fc.record(
        {
          code,
          current_limit: fc.record(
            { name: text, requests_per_unit: uint32, unit: fc.constantFrom<'SECOND' | 'MINUTE' | 'HOUR' | 'DAY'>('SECOND', 'MINUTE', 'HOUR', 'DAY') },
            { requiredKeys: [] },
          ),
          limit_remaining: uint32,
          duration_until_reset: fc.record(
            { seconds: fc.integer({ min: 0, max: 86_400 * 366 }).map(String), nanos: fc.integer({ min: 0, max: 999_999_999 }) },
            { requiredKeys: [] },
          ),
        },
        { requiredKeys: [] },
      ),
      { maxLength: 4 },
    ),
    response_headers_to_add: fc.array(fc.record({ key: text, value: text }, { requiredKeys: [] }), { maxLength: 5 }),
    raw_body: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  },
  { requiredKeys: [] },
);

function fullEncode(message: RateLimitResponse): Uint8Array {
  return responseType.encode(responseType.fromObject(message as Record<string, unknown>)).finish();
}

test('lean response encode writes the bytes the full encoder writes', () => {
  fc.assert(
    fc.property(response, (message) => {
      const lean = encodeRateLimitResponse(message);
      assert.deepEqual(responseType.toObject(responseType.decode(lean), asObject), responseType.toObject(responseType.decode(fullEncode(message)), asObject));
      assert.deepEqual(Buffer.from(lean), Buffer.from(fullEncode(message)), 'byte for byte');
    }),
    { numRuns: 300 },
  );
});

test('a response with fields the service never sets is refused, not written differently', () => {
  const refused: RateLimitResponse[] = [
    { overall_code: 'OK', request_headers_to_add: [{ key: 'x-a', value: '1' }] },
    { statuses: [{ code: 'OK', quota: { requests: 3, id: 'q' } }] },
    { response_headers_to_add: [{ key: 'x-b', raw_value: Buffer.from('2') }] },
    { dynamic_metadata: { fields: {} } },
    { raw_body: 'aGk=' },
  ];
  for (const message of refused) assert.throws(() => encodeRateLimitResponse(message), TypeError);
});

// ---- what responses.ts builds ------------------------------------------------------

const policyName = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), text);
const period = fc.constantFrom<RateLimitPolicy['limit']['per']>('second', 'minute', 'hour', 'day');
const verdict: fc.Arbitrary<CounterVerdict> = fc.record({
  over: fc.boolean(),
  used: fc.nat(2_000_000),
  retryAfterMs: fc.oneof(fc.nat(86_400_000), fc.double({ min: 0, max: 86_400_000, noNaN: true })),
  resetMs: fc.oneof(fc.nat(86_400_000), fc.double({ min: 0, max: 86_400_000, noNaN: true })),
});

/** A request with `n` descriptors and counters answering for some of them, with their verdicts. */
const counted = fc.integer({ min: 1, max: 5 }).chain((n) =>
  fc.record({
    descriptors: fc.constant(n),
    admitted: fc.boolean(),
    counters: fc.array(
      fc.record({
        name: policyName,
        requests: fc.integer({ min: 1, max: 1_000_000_000 }),
        per: period,
        burst: fc.nat(1_000),
        descriptors: fc.uniqueArray(fc.nat(n - 1), { minLength: 1, maxLength: n }),
        verdict,
      }),
      { minLength: 1, maxLength: 3 },
    ),
  }),
);

test('lean response encode writes the full encoder\'s bytes for every response responses.ts builds', () => {
  fc.assert(
    fc.property(counted, policyName, ({ descriptors, admitted, counters }, denying) => {
      const request: RateLimitRequest = { domain: 'sluice', descriptors: Array.from({ length: descriptors }, () => ({ entries: [{ key: 'k', value: 'v' }] })) };
      const planned: PlannedCounter[] = counters.map((c) => ({
        policy: { name: c.name, limit: { requests: c.requests, per: c.per }, burst: c.burst, algorithm: 'sliding_window', on_error: 'allow', key: ['route'] } as RateLimitPolicy,
        spec: { key: c.name, algorithm: 'sliding_window', capacity: c.requests + c.burst, windowMs: 60_000, hits: 1 },
        descriptors: c.descriptors,
      }));
      // A refusal has at least one counter over (the store never refuses otherwise).
      const verdicts = counters.map((c, i) => (!admitted && i === 0 ? { ...c.verdict, over: true } : c.verdict));
      for (const message of [countedResponse(request, planned, { admitted, verdicts }), unavailableResponse(request, denying)]) {
        assert.deepEqual(Buffer.from(encodeRateLimitResponse(message)), Buffer.from(fullEncode(message)));
      }
    }),
    { numRuns: 500, seed: 1_010 },
  );
});

// ---- requests ------------------------------------------------------------------------

/** What the service reads of a request (service.ts, descriptors.ts), in the expressions it uses. */
function serviceView(request: RateLimitRequest) {
  return {
    domain: request.domain,
    descriptors: (request.descriptors ?? []).map((descriptor) => (descriptor.entries ?? []).map((entry) => [entry.key, entry.value ?? ''])),
    hits_addend: request.hits_addend,
  };
}

function fullDecode(bytes: Uint8Array): RateLimitRequest {
  return requestType.decode(bytes) as unknown as RateLimitRequest;
}

const entryText = fc.oneof(text, fc.constant(''), fc.constantFrom('sluice_policy', 'remote_address', 'header:x-tenant', 'Ünïcödé'));

/** RateLimitRequests as Envoy could send them, with the descriptor limit override the service does not read. */
const rateLimitRequest: fc.Arbitrary<RateLimitRequest> = fc.record(
  {
    domain: entryText,
    descriptors: fc.array(
      fc.record(
        {
          entries: fc.array(fc.record({ key: entryText, value: entryText }, { requiredKeys: [] }), { maxLength: 5 }),
          limit: fc.record({ requests_per_unit: uint32, unit: fc.constantFrom('SECOND', 'MINUTE', 'HOUR', 'DAY') }, { requiredKeys: [] }),
        },
        { requiredKeys: [] },
      ),
      { maxLength: 5 },
    ),
    hits_addend: uint32,
  },
  { requiredKeys: [] },
);

/** Fields no RateLimitRequest has (numbers 9-15, every wire type): a decoder must step over them. */
const unknownFields = fc.array(
  fc.oneof(
    fc.record({ field: fc.integer({ min: 9, max: 15 }), varint: uint32 }).map(({ field, varint }) => protobuf.Writer.create().uint32((field << 3) | 0).uint32(varint).finish()),
    fc.record({ field: fc.integer({ min: 9, max: 15 }), bytes: fc.uint8Array({ maxLength: 10 }) }).map(({ field, bytes }) => protobuf.Writer.create().uint32((field << 3) | 2).bytes(bytes).finish()),
    fc.integer({ min: 9, max: 15 }).map((field) => protobuf.Writer.create().uint32((field << 3) | 1).fixed64(7).uint32((field << 3) | 5).fixed32(9).finish()),
  ),
  { maxLength: 3 },
);

test('lean request decode reads what the service reads as protobufjs\' decode does (fast-check, 2,000 requests)', () => {
  fc.assert(
    fc.property(rateLimitRequest, unknownFields, fc.boolean(), (message, unknown, unknownFirst) => {
      const known = requestType.encode(requestType.fromObject(message)).finish();
      const bytes = Buffer.concat(unknownFirst ? [...unknown, known] : [known, ...unknown]);
      assert.deepEqual(serviceView(decodeRateLimitRequest(bytes)), serviceView(fullDecode(bytes)));
    }),
    { numRuns: 2_000, seed: 2_020 },
  );
});

test('truncated requests throw or decode as protobufjs does; garbage throws or decodes, never hangs', () => {
  fc.assert(
    fc.property(rateLimitRequest, (message) => {
      const bytes = requestType.encode(requestType.fromObject(message)).finish();
      for (let cut = 0; cut < bytes.length; cut++) {
        const prefix = bytes.subarray(0, cut);
        let lean: RateLimitRequest;
        try {
          lean = decodeRateLimitRequest(prefix);
        } catch (err) {
          assert.ok(err instanceof RangeError, String(err));
          continue;
        }
        // A cut between fields is a shorter, valid message.
        assert.deepEqual(serviceView(lean), serviceView(fullDecode(prefix)));
      }
    }),
    { numRuns: 200, seed: 3_030 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeRateLimitRequest(bytes);
      } catch (err) {
        assert.ok(err instanceof Error);
      }
    }),
    { numRuns: 2_000, seed: 4_040 },
  );
  // A cut inside a string or a nested message throws.
  const whole = requestType.encode(requestType.fromObject({ domain: 'sluice', descriptors: [{ entries: [{ key: 'sluice_policy', value: 'per-ip' }] }], hits_addend: 1 })).finish();
  for (const cut of [1, 3, 10, whole.length - 3]) assert.throws(() => decodeRateLimitRequest(whole.subarray(0, cut)), RangeError, `cut at ${cut}`);
  // An entry's key claiming more bytes than its entry holds would swallow the next field: refused.
  const entry = protobuf.Writer.create().uint32((1 << 3) | 2).uint32(8).uint32(0x61).finish();
  const descriptor = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(entry).finish();
  const overrun = protobuf.Writer.create().uint32((2 << 3) | 2).bytes(descriptor).uint32((1 << 3) | 2).string('sluice').finish();
  assert.throws(() => decodeRateLimitRequest(overrun), RangeError);
});
