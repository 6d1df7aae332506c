// Reading protobuf bytes field by field with protobufjs' Reader alone, for the
// request-path decoders (authz/wire.ts, ratelimit/wire.ts): they keep only the
// fields their service reads and never load the Envoy API registry (envoy.ts).
import type protobuf from 'protobufjs';

/** Protobuf wire types the decoders name. */
export const WIRE_TYPE = { varint: 0, lengthDelimited: 2 } as const;

/**
 * Calls `visit` for each field of the message ending at `end`; a field `visit`
 * does not take (returns false) is skipped by its wire type. `message` names the
 * message in errors. Throws a RangeError when a field runs past the message's end
 * (it would have read the next field's bytes).
 */
export function eachField(reader: protobuf.Reader, end: number, message: string, visit: (field: number, wireType: number) => boolean): void {
  while (reader.pos < end) {
    const key = reader.uint32();
    const wireType = key & 7;
    if (!visit(key >>> 3, wireType)) reader.skipType(wireType);
  }
  if (reader.pos !== end) throw new RangeError(`${message}: a field runs past the end of its message`);
}

/** The end position of the length-delimited field at the reader; throws when it claims more bytes than are left. */
export function fieldEnd(reader: protobuf.Reader, message: string): number {
  const length = reader.uint32();
  const end = reader.pos + length;
  if (end > reader.len) throw new RangeError(`${message}: a field runs past the end of the message`);
  return end;
}

/** A string field's value; throws when it claims more bytes than are left (protobufjs' Buffer reader would cut it short silently). */
export function readString(reader: protobuf.Reader, message: string): string {
  const start = reader.pos;
  fieldEnd(reader, message);
  reader.pos = start;
  return reader.string();
}
