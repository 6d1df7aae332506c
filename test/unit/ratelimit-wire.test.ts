// The rate-limit service's field-by-field response writer (control-plane/src/ratelimit/wire.ts)
// against protobufjs' full encoder of the same Envoy message, on generated responses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { messageType } from '../../control-plane/src/proto/envoy.ts';
import { encodeRateLimitResponse } from '../../control-plane/src/ratelimit/wire.ts';
import type { RateLimitResponse } from '../../control-plane/src/proto/codec.ts';

const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');
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

test('a response with fields the lean encoder does not write goes through the full encoder', () => {
  const message: RateLimitResponse = {
    overall_code: 'OK',
    request_headers_to_add: [{ key: 'x-a', value: '1' }],
    statuses: [{ code: 'OK', quota: { requests: 3, id: 'q' } }],
    response_headers_to_add: [{ key: 'x-b', raw_value: Buffer.from('2') }],
  };
  assert.deepEqual(Buffer.from(encodeRateLimitResponse(message)), Buffer.from(fullEncode(message)));
  for (const part of [{ statuses: message.statuses }, { response_headers_to_add: message.response_headers_to_add }] as RateLimitResponse[]) {
    assert.deepEqual(Buffer.from(encodeRateLimitResponse(part)), Buffer.from(fullEncode(part)));
  }
});
