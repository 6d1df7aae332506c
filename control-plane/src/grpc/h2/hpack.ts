// HPACK (RFC 7541): a full decoder, because peers may use every representation
// and their dynamic table must be mirrored exactly, and the smallest encoder a
// server needs: literals without indexing, raw strings, so this side keeps no
// table the peer must mirror. Pure: no I/O.
import { DEFAULT_HEADER_TABLE_SIZE } from './frames.ts';
import { decodeHuffman, HuffmanError } from './huffman.ts';

/** RFC 7541 Appendix A; entry i is index i + 1. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''], ['access-control-allow-origin', ''],
  ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''], ['content-location', ''], ['content-range', ''],
  ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''],
  ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/** Per-entry overhead in the table's size accounting (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;
/** No integer this server accepts needs more (header blocks are bounded far below). */
const MAX_INTEGER = 2 ** 28;

export class HpackError extends Error {}

/** Decodes header blocks of one connection, in order, keeping the peer's dynamic table. */
export class HpackDecoder {
  /** Newest entry last. */
  private readonly entries: [string, string][] = [];
  private size = 0;
  private maxSize: number;

  /** `limit` is the SETTINGS_HEADER_TABLE_SIZE this side advertised: the peer may not exceed it. */
  constructor(private readonly limit = DEFAULT_HEADER_TABLE_SIZE) {
    this.maxSize = limit;
  }

  /** Calls `onField` for each field of `block` in order; throws HpackError when the block is malformed. */
  decode(block: Uint8Array, onField: (name: string, value: string) => void): void {
    const reader = { at: 0 };
    let fieldsSeen = false;
    while (reader.at < block.length) {
      const first = block[reader.at]!;
      if (first & 0x80) {
        const [name, value] = this.lookup(readInteger(block, reader, 7));
        onField(name, value);
      } else if (first & 0x40) {
        const [name, value] = this.readLiteral(block, reader, 6);
        this.insert(name, value);
        onField(name, value);
      } else if (first & 0x20) {
        // A table size update may only open a block (RFC 7541 §4.2).
        if (fieldsSeen) throw new HpackError('dynamic table size update after a header field');
        this.resize(readInteger(block, reader, 5));
        continue;
      } else {
        const [name, value] = this.readLiteral(block, reader, 4);
        onField(name, value);
      }
      fieldsSeen = true;
    }
  }

  private readLiteral(block: Uint8Array, reader: { at: number }, prefixBits: number): [string, string] {
    const index = readInteger(block, reader, prefixBits);
    const name = index === 0 ? readString(block, reader) : this.lookup(index)[0];
    return [name, readString(block, reader)];
  }

  private lookup(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const entry = this.entries[this.entries.length - 1 - (index - STATIC_TABLE.length - 1)];
    if (!entry) throw new HpackError(`index ${index} is past the dynamic table`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.maxSize) {
      // An entry larger than the table empties it and is not kept (RFC 7541 §4.4).
      this.entries.length = 0;
      this.size = 0;
      return;
    }
    this.entries.push([name, value]);
    this.size += entrySize;
    this.evict();
  }

  private resize(maxSize: number): void {
    if (maxSize > this.limit) throw new HpackError(`dynamic table size ${maxSize} above the advertised ${this.limit}`);
    this.maxSize = maxSize;
    this.evict();
  }

  private evict(): void {
    let drop = 0;
    while (this.size > this.maxSize) {
      const [name, value] = this.entries[drop++]!;
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
    }
    if (drop > 0) this.entries.splice(0, drop);
  }
}

/** An N-bit prefix integer (RFC 7541 §5.1), advancing `reader.at`. */
function readInteger(block: Uint8Array, reader: { at: number }, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  let value = block[reader.at++]! & max;
  if (value < max) return value;
  let scale = 1;
  for (;;) {
    if (reader.at >= block.length) throw new HpackError('truncated integer');
    const byte = block[reader.at++]!;
    value += (byte & 0x7f) * scale;
    if (value > MAX_INTEGER) throw new HpackError('integer too large');
    if ((byte & 0x80) === 0) return value;
    scale *= 128;
  }
}

/** A string literal (RFC 7541 §5.2) as latin1, one char per octet. */
function readString(block: Uint8Array, reader: { at: number }): string {
  if (reader.at >= block.length) throw new HpackError('truncated string');
  const huffman = (block[reader.at]! & 0x80) !== 0;
  const length = readInteger(block, reader, 7);
  const start = reader.at;
  const end = start + length;
  if (end > block.length) throw new HpackError('string runs past the block');
  reader.at = end;
  if (!huffman) return Buffer.from(block.buffer, block.byteOffset + start, length).toString('latin1');
  try {
    return decodeHuffman(block, start, end);
  } catch (error) {
    if (error instanceof HuffmanError) throw new HpackError(error.message);
    throw error;
  }
}

/**
 * A header block of literals without indexing (RFC 7541 §6.2.2), names and values
 * raw latin1. Names found in the static table are sent by index.
 */
export function encodeHeaderBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of fields) {
    const nameIndex = STATIC_NAME_INDEX.get(name) ?? 0;
    writeInteger(bytes, nameIndex, 4, 0x00);
    if (nameIndex === 0) writeString(bytes, name);
    writeString(bytes, value);
  }
  return Buffer.from(bytes);
}

const STATIC_NAME_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([name], i) => {
  if (!STATIC_NAME_INDEX.has(name)) STATIC_NAME_INDEX.set(name, i + 1);
});

function writeInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

function writeString(out: number[], text: string): void {
  const raw = Buffer.from(text, 'latin1');
  writeInteger(out, raw.length, 7, 0x00);
  for (const byte of raw) out.push(byte);
}
