// ShouldRateLimit messages on the wire, with protobufjs' Reader and Writer only:
// the registry of the whole Envoy API (proto/envoy.ts) is most of a heap, and the
// request-path worker never loads it (test/unit/request-path-imports.test.ts).
// Responses are written field by field (the class path first built a message
// object per status, limit, duration and header only for the bytes to be written
// once: ~5-7 µs -> ~2-3 µs per decision on the bench response); requests are read
// by a walk that keeps what the service reads. grpc-js clients' definition, on
// the full codec, is in client.ts.
//
// Field numbers are envoy/service/ratelimit/v3/rls.proto's and
// envoy/extensions/common/ratelimit/v3/ratelimit.proto's; ratelimit-wire.test.ts
// holds both directions to the full protobufjs codec on generated messages.
import protobuf from 'protobufjs';
import type { RateLimitResponse } from '../proto/codec.ts';
import { eachField, fieldEnd, readString } from '../proto/walk.ts';

/** Protobuf wire types. */
const VARINT = 0;
const LENGTH_DELIMITED = 2;

const tag = (field: number, wireType: number) => (field << 3) | wireType;

// ---- requests ---------------------------------------------------------------------

/**
 * What the service reads of a RateLimitRequest { string domain = 1; repeated
 * RateLimitDescriptor descriptors = 2; uint32 hits_addend = 3 }, unset fields at
 * proto3's defaults as protobufjs' decode gives them. A descriptor's `limit`
 * override (field 2) is not read: limits come from the State.
 */
export interface WireRateLimitRequest {
  domain: string;
  /** RateLimitDescriptor { repeated Entry entries = 1 }, Entry { string key = 1; string value = 2 }. */
  descriptors: Array<{ entries: Array<{ key: string; value: string }> }>;
  hits_addend: number;
}

const MESSAGE = 'RateLimitRequest';

function readEntry(reader: protobuf.Reader): { key: string; value: string } {
  const entry = { key: '', value: '' };
  eachField(reader, fieldEnd(reader, MESSAGE), MESSAGE, (field, wireType) => {
    if (wireType !== LENGTH_DELIMITED) return false;
    if (field === 1) entry.key = readString(reader, MESSAGE);
    else if (field === 2) entry.value = readString(reader, MESSAGE);
    else return false;
    return true;
  });
  return entry;
}

function readDescriptor(reader: protobuf.Reader): { entries: Array<{ key: string; value: string }> } {
  const entries: Array<{ key: string; value: string }> = [];
  eachField(reader, fieldEnd(reader, MESSAGE), MESSAGE, (field, wireType) => {
    if (field !== 1 || wireType !== LENGTH_DELIMITED) return false;
    entries.push(readEntry(reader));
    return true;
  });
  return { entries };
}

/** Reads a RateLimitRequest's bytes. Throws (RangeError) on truncated or overrunning input. */
export function decodeRateLimitRequest(bytes: Uint8Array): WireRateLimitRequest {
  const reader = protobuf.Reader.create(bytes);
  const request: WireRateLimitRequest = { domain: '', descriptors: [], hits_addend: 0 };
  eachField(reader, reader.len, MESSAGE, (field, wireType) => {
    if (field === 1 && wireType === LENGTH_DELIMITED) request.domain = readString(reader, MESSAGE);
    else if (field === 2 && wireType === LENGTH_DELIMITED) request.descriptors.push(readDescriptor(reader));
    else if (field === 3 && wireType === VARINT) request.hits_addend = reader.uint32();
    else return false;
    return true;
  });
  return request;
}

// ---- responses --------------------------------------------------------------------

const CODES: Readonly<Record<string, number>> = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 };
const UNITS: Readonly<Record<string, number>> = { UNKNOWN: 0, SECOND: 1, MINUTE: 2, HOUR: 3, DAY: 4, MONTH: 5, YEAR: 6 };

type Status = NonNullable<RateLimitResponse['statuses']>[number];
type Header = NonNullable<RateLimitResponse['response_headers_to_add']>[number];

/** A value the writer has no encoding for: a programming error in the service, never sent as different bytes. */
function unwritable(what: string): never {
  throw new TypeError(`RateLimitResponse: ${what} is not written by the lean encoder`);
}

function enumNumber(values: Readonly<Record<string, number>>, value: string | number, what: string): number {
  if (typeof value === 'number') return value;
  return values[value] ?? unwritable(`${what} '${value}'`);
}

/**
 * RateLimitResponse { Code overall_code = 1; repeated DescriptorStatus statuses = 2;
 * repeated HeaderValue response_headers_to_add = 3; bytes raw_body = 5 }, fields in
 * number order (set-but-default values included) as protobufjs writes them.
 * Throws on fields the service never sets (request_headers_to_add,
 * dynamic_metadata, quotas, raw header values, a string raw_body).
 */
export function encodeRateLimitResponse(response: RateLimitResponse): Buffer {
  if (response.request_headers_to_add?.length) unwritable('request_headers_to_add');
  if (response.dynamic_metadata != null) unwritable('dynamic_metadata');
  if (response.quota != null) unwritable('quota');
  const writer = protobuf.Writer.create();
  if (response.overall_code != null) writer.uint32(tag(1, VARINT)).int32(enumNumber(CODES, response.overall_code, 'overall_code'));
  for (const status of response.statuses ?? []) writeStatus(writer.uint32(tag(2, LENGTH_DELIMITED)).fork(), status);
  for (const header of response.response_headers_to_add ?? []) writeHeader(writer.uint32(tag(3, LENGTH_DELIMITED)).fork(), header);
  if (response.raw_body != null) {
    // (protobufjs reads a string here as base64; the service sends bytes.)
    if (typeof response.raw_body === 'string') unwritable('a string raw_body');
    writer.uint32(tag(5, LENGTH_DELIMITED)).bytes(response.raw_body);
  }
  const bytes = writer.finish();
  // (In Node, protobufjs' writer already returns a Buffer: no copy then.)
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
}

/** DescriptorStatus { Code code = 1; RateLimit current_limit = 2; uint32 limit_remaining = 3; Duration duration_until_reset = 4 }. */
function writeStatus(writer: protobuf.Writer, status: Status): void {
  if (status.quota != null) unwritable('a status quota');
  if (status.code != null) writer.uint32(tag(1, VARINT)).int32(enumNumber(CODES, status.code, 'code'));
  const limit = status.current_limit;
  if (limit != null) {
    writer.uint32(tag(2, LENGTH_DELIMITED)).fork();
    // RateLimit { uint32 requests_per_unit = 1; Unit unit = 2; string name = 3 }
    if (limit.requests_per_unit != null) writer.uint32(tag(1, VARINT)).uint32(limit.requests_per_unit);
    if (limit.unit != null) writer.uint32(tag(2, VARINT)).int32(enumNumber(UNITS, limit.unit, 'unit'));
    if (limit.name != null) writer.uint32(tag(3, LENGTH_DELIMITED)).string(limit.name);
    writer.ldelim();
  }
  if (status.limit_remaining != null) writer.uint32(tag(3, VARINT)).uint32(status.limit_remaining);
  const reset = status.duration_until_reset;
  if (reset != null) {
    // Duration { int64 seconds = 1; int32 nanos = 2 }; protobufjs' int64 takes the decimal string the service sends.
    writer.uint32(tag(4, LENGTH_DELIMITED)).fork();
    if (reset.seconds != null) writer.uint32(tag(1, VARINT)).int64(reset.seconds);
    if (reset.nanos != null) writer.uint32(tag(2, VARINT)).int32(reset.nanos);
    writer.ldelim();
  }
  writer.ldelim();
}

/** HeaderValue { string key = 1; string value = 2; bytes raw_value = 3 } (the service sets key and value). */
function writeHeader(writer: protobuf.Writer, header: Header): void {
  if (header.raw_value != null) unwritable('a header raw_value');
  if (header.key != null) writer.uint32(tag(1, LENGTH_DELIMITED)).string(header.key);
  if (header.value != null) writer.uint32(tag(2, LENGTH_DELIMITED)).string(header.value);
  writer.ldelim();
}
