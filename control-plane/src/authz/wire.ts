// The Authorization service's messages on the wire. Requests are read with a lean
// walk over the protobuf bytes that keeps only what the service reads; responses
// are written field by field into one reused buffer (proto/scratch-writer.ts).
// Neither loads the Envoy API registry (proto/envoy.ts), the bulk of a heap, which
// the request-path worker never loads (test/unit/request-path-imports.test.ts).
// grpc-js clients' method definition is in client.ts.
import protobuf from 'protobufjs';
import type { CheckResponse } from '../proto/codec.ts';
import { ScratchWriter } from '../proto/scratch-writer.ts';
import { eachField, fieldEnd, readString, WIRE_TYPE } from '../proto/walk.ts';
import { readsHeader } from './decide.ts';

/**
 * The fields of a CheckRequest the service reads (unset ones stay absent, as in a
 * protobufjs decode). `method` is for clients (tests) to send; the decoder skips it.
 */
export interface WireCheckRequest {
  attributes?: {
    request?: { http?: { headers?: Record<string, string>; path?: string; method?: string } };
    context_extensions?: Record<string, string>;
  };
}

// Field numbers, from envoy/service/auth/v3/external_auth.proto and attribute_context.proto.
const FIELD = {
  checkRequestAttributes: 1,
  attributesRequest: 4,
  attributesContextExtensions: 10,
  requestHttp: 2,
  httpHeaders: 3,
  httpPath: 4,
  mapKey: 1,
  mapValue: 2,
} as const;
const LENGTH_DELIMITED = WIRE_TYPE.lengthDelimited;
const MESSAGE = 'CheckRequest';

/**
 * Calls `visit` for each length-delimited field of the message ending at `end`:
 * every field the service reads is one, and a field of another wire type under a
 * known number is not Envoy's and is skipped.
 */
function eachLengthDelimited(reader: protobuf.Reader, end: number, visit: (field: number) => boolean): void {
  eachField(reader, end, MESSAGE, (field, wireType) => wireType === LENGTH_DELIMITED && visit(field));
}

/** One map<string, string> entry into `into`; a value is decoded only when `keep` wants its key. */
function readMapEntry(reader: protobuf.Reader, into: Record<string, string>, keep: (key: string) => boolean): void {
  const end = fieldEnd(reader, MESSAGE);
  let key = '';
  let value = '';
  let valueAt = -1;
  eachLengthDelimited(reader, end, (field) => {
    if (field === FIELD.mapKey) key = readString(reader, MESSAGE);
    else if (field === FIELD.mapValue) {
      valueAt = reader.pos; // read after the key is known (the key may come second)
      reader.skip(reader.uint32());
    } else return false;
    return true;
  });
  if (!keep(key)) return;
  if (valueAt >= 0) {
    reader.pos = valueAt;
    value = readString(reader, MESSAGE);
    reader.pos = end;
  }
  into[key] = value;
}

const everyKey = () => true;

function readHttp(reader: protobuf.Reader, http: NonNullable<NonNullable<NonNullable<WireCheckRequest['attributes']>['request']>['http']>): void {
  eachLengthDelimited(reader, fieldEnd(reader, MESSAGE), (field) => {
    if (field === FIELD.httpHeaders) readMapEntry(reader, (http.headers ??= Object.create(null) as Record<string, string>), readsHeader);
    else if (field === FIELD.httpPath) http.path = readString(reader, MESSAGE);
    else return false;
    return true;
  });
}

function readRequest(reader: protobuf.Reader, request: NonNullable<NonNullable<WireCheckRequest['attributes']>['request']>): void {
  eachLengthDelimited(reader, fieldEnd(reader, MESSAGE), (field) => {
    if (field !== FIELD.requestHttp) return false;
    readHttp(reader, (request.http ??= { path: '' }));
    return true;
  });
}

function readAttributes(reader: protobuf.Reader, attributes: NonNullable<WireCheckRequest['attributes']>): void {
  eachLengthDelimited(reader, fieldEnd(reader, MESSAGE), (field) => {
    if (field === FIELD.attributesRequest) readRequest(reader, (attributes.request ??= {}));
    else if (field === FIELD.attributesContextExtensions) readMapEntry(reader, (attributes.context_extensions ??= Object.create(null) as Record<string, string>), everyKey);
    else return false;
    return true;
  });
}

/**
 * Reads a CheckRequest's bytes for what the service uses: the route's
 * context_extensions, the request path and the headers decide.ts reads (other
 * headers are skipped undecoded). Addresses, time, metadata and anything else are
 * stepped over, never materialised: the full protobufjs decode built a dozen
 * objects per check that nothing read. Maps use null-prototype objects, so a
 * header named __proto__ is an ordinary key. Throws on truncated input (grpc-js
 * then fails the call, and the route's on_error decides).
 */
export function decodeCheckRequest(bytes: Uint8Array): WireCheckRequest {
  const reader = protobuf.Reader.create(bytes);
  const request: WireCheckRequest = {};
  eachLengthDelimited(reader, reader.len, (field) => {
    if (field !== FIELD.checkRequestAttributes) return false;
    readAttributes(reader, (request.attributes ??= {}));
    return true;
  });
  return request;
}

/** The method's HTTP/2 path. */
export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

// ---- CheckResponse, written field by field --------------------------------------
// Field numbers from envoy/service/auth/v3/external_auth.proto and the messages it
// uses (config/core/v3/base.proto, type/v3/http_status.proto, google/rpc/status.proto,
// google/protobuf/struct.proto and wrappers.proto). Fields go out in number order,
// set-but-default values included, as protobufjs' encoder writes them:
// authz-wire.test.ts holds the bytes equal to its output on generated responses.

const VARINT = 0;
const FIXED64 = 1;

const tag = (field: number, wireType: number) => (field << 3) | wireType;

/** One writer for every response (checks are encoded one at a time, synchronously). */
const responseWriter = new ScratchWriter();

type HeaderOption = NonNullable<NonNullable<CheckResponse['ok_response']>['headers']>[number];
type Struct = NonNullable<CheckResponse['dynamic_metadata']>;
type Value = NonNullable<Struct['fields']>[string];
type QueryParameter = NonNullable<NonNullable<CheckResponse['ok_response']>['query_parameters_to_set']>[number];

const APPEND_ACTIONS: Readonly<Record<string, number>> = { APPEND_IF_EXISTS_OR_ADD: 0, ADD_IF_ABSENT: 1, OVERWRITE_IF_EXISTS_OR_ADD: 2, OVERWRITE_IF_EXISTS: 3 };
const NULL_VALUES: Readonly<Record<string, number>> = { NULL_VALUE: 0 };

/** A value the writer has no encoding for: a programming error in response.ts, never sent as different bytes. */
function unwritable(what: string): never {
  throw new TypeError(`CheckResponse: ${what} is not written by the lean encoder`);
}

function enumNumber(values: Readonly<Record<string, number>>, value: string | number, what: string): number {
  if (typeof value === 'number') return value;
  return values[value] ?? unwritable(`${what} '${value}'`);
}

/** A nested message under `field`: its bytes are written by `write`, then length-prefixed. */
function nested(writer: ScratchWriter, field: number, write: () => void): void {
  writer.uint32(tag(field, LENGTH_DELIMITED)).fork();
  write();
  writer.ldelim();
}

function writeString(writer: ScratchWriter, field: number, value: string | null | undefined): void {
  if (value != null) writer.uint32(tag(field, LENGTH_DELIMITED)).string(value);
}

function writeStrings(writer: ScratchWriter, field: number, values: readonly string[] | null | undefined): void {
  if (values) for (const value of values) writer.uint32(tag(field, LENGTH_DELIMITED)).string(value);
}

/** google.protobuf.Value { NullValue null_value = 1; double number_value = 2; string string_value = 3; bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6 } */
function writeValue(writer: ScratchWriter, value: Value): void {
  if (value.nullValue != null) writer.uint32(tag(1, VARINT)).int32(enumNumber(NULL_VALUES, value.nullValue, 'nullValue'));
  if (value.numberValue != null) writer.uint32(tag(2, FIXED64)).double(Number(value.numberValue));
  writeString(writer, 3, value.stringValue);
  if (value.boolValue != null) writer.uint32(tag(4, VARINT)).bool(value.boolValue);
  const struct = value.structValue;
  if (struct != null) nested(writer, 5, () => writeStruct(writer, struct));
  const list = value.listValue;
  // ListValue { repeated Value values = 1 }
  if (list != null) nested(writer, 6, () => list.values?.forEach((item) => nested(writer, 1, () => writeValue(writer, item))));
}

/** google.protobuf.Struct { map<string, Value> fields = 1 }: each entry a { key = 1, value = 2 } message. */
function writeStruct(writer: ScratchWriter, struct: Struct): void {
  const fields = struct.fields;
  if (fields == null) return;
  for (const key of Object.keys(fields)) {
    nested(writer, 1, () => {
      writer.uint32(tag(1, LENGTH_DELIMITED)).string(key);
      nested(writer, 2, () => writeValue(writer, fields[key]!));
    });
  }
}

/** HeaderValueOption { HeaderValue header = 1; BoolValue append = 2; HeaderAppendAction append_action = 3; bool keep_empty_value = 4 } */
function writeHeaderOption(writer: ScratchWriter, option: HeaderOption): void {
  const header = option.header;
  if (header != null) {
    // HeaderValue { string key = 1; string value = 2; bytes raw_value = 3 }
    nested(writer, 1, () => {
      writeString(writer, 1, header.key);
      writeString(writer, 2, header.value);
      if (header.raw_value != null) {
        // (protobufjs would read a string here as base64; the service never sends one.)
        if (typeof header.raw_value === 'string') unwritable('a string raw_value');
        writer.uint32(tag(3, LENGTH_DELIMITED)).bytes(header.raw_value);
      }
    });
  }
  const append = option.append;
  // BoolValue { bool value = 1 }
  if (append != null) {
    nested(writer, 2, () => {
      if (append.value != null) writer.uint32(tag(1, VARINT)).bool(append.value);
    });
  }
  if (option.append_action != null) writer.uint32(tag(3, VARINT)).int32(enumNumber(APPEND_ACTIONS, option.append_action, 'append_action'));
  if (option.keep_empty_value != null) writer.uint32(tag(4, VARINT)).bool(option.keep_empty_value);
}

function writeHeaderOptions(writer: ScratchWriter, field: number, options: readonly HeaderOption[] | null | undefined): void {
  if (options) for (const option of options) nested(writer, field, () => writeHeaderOption(writer, option));
}

/** QueryParameter { string key = 1; string value = 2 } */
function writeQueryParameter(writer: ScratchWriter, parameter: QueryParameter): void {
  writeString(writer, 1, parameter.key);
  writeString(writer, 2, parameter.value);
}

/**
 * A CheckResponse's bytes: CheckResponse { google.rpc.Status status = 1;
 * DeniedHttpResponse denied_response = 2; OkHttpResponse ok_response = 3;
 * Struct dynamic_metadata = 4 }. Written with ScratchWriter alone: the
 * registry of the Envoy API (proto/envoy.ts) is not loaded on the request path.
 * Throws on what the service never sends (status details, HTTP status names).
 */
export function encodeCheckResponse(response: CheckResponse): Uint8Array {
  const writer = responseWriter.reset();
  const status = response.status;
  if (status != null) {
    // google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3 }
    if (status.details?.length) unwritable('status.details');
    nested(writer, 1, () => {
      if (status.code != null) writer.uint32(tag(1, VARINT)).int32(status.code);
      writeString(writer, 2, status.message);
    });
  }
  const denied = response.denied_response;
  if (denied != null) {
    // DeniedHttpResponse { HttpStatus status = 1; repeated HeaderValueOption headers = 2; string body = 3 }
    nested(writer, 2, () => {
      const httpStatus = denied.status;
      // HttpStatus { StatusCode code = 1 }: the service sends the number.
      if (httpStatus != null) {
        nested(writer, 1, () => {
          if (httpStatus.code == null) return;
          if (typeof httpStatus.code !== 'number') unwritable(`HTTP status '${httpStatus.code}'`);
          writer.uint32(tag(1, VARINT)).int32(httpStatus.code);
        });
      }
      writeHeaderOptions(writer, 2, denied.headers);
      writeString(writer, 3, denied.body);
    });
  }
  const ok = response.ok_response;
  if (ok != null) {
    // OkHttpResponse { repeated HeaderValueOption headers = 2; Struct dynamic_metadata = 3;
    //   repeated string headers_to_remove = 5; repeated HeaderValueOption response_headers_to_add = 6;
    //   repeated QueryParameter query_parameters_to_set = 7; repeated string query_parameters_to_remove = 8 }
    nested(writer, 3, () => {
      writeHeaderOptions(writer, 2, ok.headers);
      const metadata = ok.dynamic_metadata;
      if (metadata != null) nested(writer, 3, () => writeStruct(writer, metadata));
      writeStrings(writer, 5, ok.headers_to_remove);
      writeHeaderOptions(writer, 6, ok.response_headers_to_add);
      ok.query_parameters_to_set?.forEach((parameter) => nested(writer, 7, () => writeQueryParameter(writer, parameter)));
      writeStrings(writer, 8, ok.query_parameters_to_remove);
    });
  }
  const metadata = response.dynamic_metadata;
  if (metadata != null) nested(writer, 4, () => writeStruct(writer, metadata));
  return writer.finish();
}
