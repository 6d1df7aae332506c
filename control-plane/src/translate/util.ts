// Small builders for the protobuf shapes that recur across Envoy messages, and the
// ordering/hashing helpers that keep translation deterministic.
import { createHash } from 'node:crypto';
import { type MessageName, type EnvoyMessages, packAny } from '../proto/codec.ts';
import { varintBytes, writeVarint } from '../proto/scratch-writer.ts';

export interface Duration {
  seconds?: number;
  nanos?: number;
}

/**
 * google.protobuf.Duration from milliseconds. Zero parts are left out: protobufjs
 * writes explicitly set zeros, and the shorter form is what Envoy itself emits.
 */
export function duration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  return { ...(seconds > 0 ? { seconds } : {}), ...(nanos > 0 ? { nanos } : {}) };
}

/** google.protobuf.UInt32Value. */
export function uint32(value: number): { value: number } {
  return { value };
}

/** google.protobuf.BoolValue. */
export function bool(value: boolean): { value: boolean } {
  return { value };
}

/** envoy.type.v3.FractionalPercent out of 100. */
export function percent(numerator: number): { numerator: number; denominator: 'HUNDRED' } {
  return { numerator, denominator: 'HUNDRED' };
}

/** envoy.config.core.v3.ConfigSource for "the same ADS stream". */
export function adsConfigSource(): { ads: Record<string, never>; resource_api_version: 'V3' } {
  return { ads: {}, resource_api_version: 'V3' };
}

/** A typed_config Any. */
export function typed<N extends MessageName>(name: N, message: EnvoyMessages[N]): { type_url: string; value: Uint8Array } {
  return packAny(name, message);
}

/** Plain code-unit string order: locale-independent, so output never depends on the host. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A sorted copy, by a string key. */
export function sortedBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...items].sort((a, b) => compareStrings(key(a), key(b)));
}

/**
 * An object whose keys are inserted in sorted order. protobufjs encodes map
 * entries in insertion order, so this makes map fields (typed_per_filter_config,
 * context_extensions, ...) byte-stable.
 */
export function sortedRecord<V>(entries: Iterable<readonly [string, V]>): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [key, value] of [...entries].sort((a, b) => compareStrings(a[0], b[0]))) out[key] = value;
  return out;
}

/** Content version of an encoded resource: first 16 hex chars of its SHA-256. */
export function contentVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** Escapes RE2 metacharacters (one definition, in the model that checks the regexes). */
export { re2Literal } from '../model/re2.ts';

/**
 * Header values in Envoy's header mutations are format strings where `%...%` is a
 * command; doubling `%` makes the configured value literal.
 */
export function literalHeaderValue(value: string): string {
  return value.replace(/%/g, '%%');
}

/** A socket address (IP or hostname) as envoy.config.core.v3.Address. */
export function socketAddress(address: string, port: number): { socket_address: { address: string; port_value: number } } {
  return { socket_address: { address, port_value: port } };
}

/**
 * A length-delimited protobuf field (tag, length, bytes). Protobuf parsers accept
 * fields in any order and merge repeated fields by concatenation, so encoded
 * sub-messages can be spliced into a parent without re-encoding them.
 */
export function lengthDelimited(fieldNumber: number, bytes: Uint8Array): Uint8Array {
  return concatBytes([fieldHeader(fieldNumber, bytes.length), bytes]);
}

/** The tag and length that precede `length` bytes of a length-delimited field (its body follows as separate pieces). */
export function fieldHeader(fieldNumber: number, length: number): Uint8Array {
  const tag = fieldNumber * 8 + 2;
  const out = new Uint8Array(varintBytes(tag) + varintBytes(length));
  writeVarint(out, writeVarint(out, 0, tag), length);
  return out;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The same items (by identity) in the same order. */
export function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}
