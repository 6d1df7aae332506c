// ShouldRateLimit responses on the wire, written field by field with protobufjs'
// Writer instead of fromObject + the generated encoder: every decision encodes one
// response, and the class path first builds a message object per status, limit,
// duration and header only for the bytes to be written once. Measured on the bench
// response (one status, three headers): ~5-7 µs -> ~2-3 µs per decision.
// (A field-by-field request decoder was measured too and was no faster than the
// generated decoder, ~1-1.5 µs either way, so requests are decoded by protobufjs.)
//
// Field numbers are envoy/service/ratelimit/v3/rls.proto's (and the messages it
// uses); ratelimit-wire.test.ts holds the output byte for byte to the full
// protobufjs encoder on generated responses. A response holding anything this
// writer does not write (a field the service never sets) goes through the full
// encoder instead.
import protobuf from 'protobufjs';
import type { RateLimitResponse } from '../proto/codec.ts';
import { messageType } from '../proto/envoy.ts';

const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');

/** Protobuf wire types. */
const VARINT = 0;
const LENGTH_DELIMITED = 2;

const CODES: Readonly<Record<string, number>> = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 };
const UNITS: Readonly<Record<string, number>> = { UNKNOWN: 0, SECOND: 1, MINUTE: 2, HOUR: 3, DAY: 4, MONTH: 5, YEAR: 6 };

type Status = NonNullable<RateLimitResponse['statuses']>[number];
type Header = NonNullable<RateLimitResponse['response_headers_to_add']>[number];

/** The response's bytes: written directly when it has only what the service sets, else by the full codec. */
export function encodeRateLimitResponse(response: RateLimitResponse): Buffer {
  const lean = leanBytes(response);
  return lean ?? Buffer.from(responseType.encode(responseType.fromObject(response as Record<string, unknown>)).finish());
}

/**
 * RateLimitResponse { Code overall_code = 1; repeated DescriptorStatus statuses = 2;
 * repeated HeaderValue response_headers_to_add = 3; bytes raw_body = 5 }, fields in
 * number order like protobufjs writes them; undefined when the response holds
 * anything else (then the full codec writes it).
 */
function leanBytes(response: RateLimitResponse): Buffer | undefined {
  if (response.request_headers_to_add?.length || response.dynamic_metadata || response.quota) return undefined;
  const writer = protobuf.Writer.create();
  if (response.overall_code != null) {
    const code = enumValue(CODES, response.overall_code);
    if (code === undefined) return undefined;
    writer.uint32((1 << 3) | VARINT).int32(code);
  }
  for (const status of response.statuses ?? []) if (!writeStatus(writer.uint32((2 << 3) | LENGTH_DELIMITED).fork(), status)) return undefined;
  for (const header of response.response_headers_to_add ?? []) if (!writeHeader(writer.uint32((3 << 3) | LENGTH_DELIMITED).fork(), header)) return undefined;
  if (response.raw_body != null) {
    if (typeof response.raw_body === 'string') return undefined; // (protobufjs reads a string here as base64)
    writer.uint32((5 << 3) | LENGTH_DELIMITED).bytes(response.raw_body);
  }
  const bytes = writer.finish();
  // (In Node, protobufjs' writer already returns a Buffer: no copy then.)
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
}

/** DescriptorStatus { Code code = 1; RateLimit current_limit = 2; uint32 limit_remaining = 3; Duration duration_until_reset = 4 }. */
function writeStatus(writer: protobuf.Writer, status: Status): boolean {
  if (status.quota) return false;
  if (status.code != null) {
    const code = enumValue(CODES, status.code);
    if (code === undefined) return false;
    writer.uint32((1 << 3) | VARINT).int32(code);
  }
  const limit = status.current_limit;
  if (limit) {
    writer.uint32((2 << 3) | LENGTH_DELIMITED).fork();
    // RateLimit { uint32 requests_per_unit = 1; Unit unit = 2; string name = 3 }
    if (limit.requests_per_unit != null) writer.uint32((1 << 3) | VARINT).uint32(limit.requests_per_unit);
    if (limit.unit != null) {
      const unit = enumValue(UNITS, limit.unit);
      if (unit === undefined) return false;
      writer.uint32((2 << 3) | VARINT).int32(unit);
    }
    if (limit.name != null) writer.uint32((3 << 3) | LENGTH_DELIMITED).string(limit.name);
    writer.ldelim();
  }
  if (status.limit_remaining != null) writer.uint32((3 << 3) | VARINT).uint32(status.limit_remaining);
  const reset = status.duration_until_reset;
  if (reset) {
    // Duration { int64 seconds = 1; int32 nanos = 2 }
    const seconds = typeof reset.seconds === 'string' ? Number(reset.seconds) : reset.seconds;
    if (seconds != null && (typeof seconds !== 'number' || !Number.isSafeInteger(seconds))) return false;
    writer.uint32((4 << 3) | LENGTH_DELIMITED).fork();
    if (seconds != null) writer.uint32((1 << 3) | VARINT).int64(seconds);
    if (reset.nanos != null) writer.uint32((2 << 3) | VARINT).int32(reset.nanos);
    writer.ldelim();
  }
  writer.ldelim();
  return true;
}

/** HeaderValue { string key = 1; string value = 2 } (raw_value, 3, is left to the full codec). */
function writeHeader(writer: protobuf.Writer, header: Header): boolean {
  if (header.raw_value != null) return false;
  if (header.key != null) writer.uint32((1 << 3) | LENGTH_DELIMITED).string(header.key);
  if (header.value != null) writer.uint32((2 << 3) | LENGTH_DELIMITED).string(header.value);
  writer.ldelim();
  return true;
}

function enumValue(values: Readonly<Record<string, number>>, value: string | number): number | undefined {
  return typeof value === 'number' ? value : values[value];
}
