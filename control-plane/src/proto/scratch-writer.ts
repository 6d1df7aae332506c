// A protobuf writer for the request path's responses that allocates once per
// message. protobufjs' Writer allocates an operation object per field and a
// state per nested message, which on the authz check was ~7 KB of garbage per
// answer (bench/RESULTS.md). This one writes straight into one reused scratch
// buffer; a nested message reserves one byte for its length and moves its bytes
// along in the rare case the length needs more. The output is byte for byte what
// protobufjs writes for the same calls (test/unit/authz-wire.test.ts holds it so).
// Not reentrant: one message is written at a time, start to finish, synchronously.

const INITIAL_BYTES = 16 * 1024;

export class ScratchWriter {
  private buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  private pos = 0;
  /** Where each open nested message's reserved length byte is. */
  private readonly forks: number[] = [];

  /** Starts a message (drops anything left from one abandoned by a throw). */
  reset(): this {
    this.pos = 0;
    this.forks.length = 0;
    return this;
  }

  uint32(value: number): this {
    this.ensure(5);
    this.pos = this.varintAt(this.pos, value >>> 0);
    return this;
  }

  /** A negative int32 is a ten-byte varint (sign-extended to 64 bits), as protobuf says. */
  int32(value: number): this {
    if (value >= 0) return this.uint32(value);
    this.ensure(10);
    let rest = BigInt.asUintN(64, BigInt(value | 0));
    for (let i = 0; i < 9; i++) {
      this.buffer[this.pos++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    this.buffer[this.pos++] = Number(rest);
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  double(value: number): this {
    this.ensure(8);
    this.buffer.writeDoubleLE(value, this.pos);
    this.pos += 8;
    return this;
  }

  string(value: string): this {
    const length = Buffer.byteLength(value, 'utf8');
    this.uint32(length);
    this.ensure(length);
    this.pos += this.buffer.write(value, this.pos, length, 'utf8');
    return this;
  }

  bytes(value: Uint8Array): this {
    this.uint32(value.length);
    this.ensure(value.length);
    this.buffer.set(value, this.pos);
    this.pos += value.length;
    return this;
  }

  /** Opens a nested message: what follows until ldelim() is length-prefixed. */
  fork(): this {
    this.ensure(1);
    this.forks.push(this.pos);
    this.pos += 1;
    return this;
  }

  ldelim(): this {
    const at = this.forks.pop();
    if (at === undefined) throw new Error('ScratchWriter: ldelim without fork');
    const length = this.pos - at - 1;
    const prefixBytes = varintBytes(length);
    if (prefixBytes > 1) {
      this.ensure(prefixBytes - 1);
      this.buffer.copyWithin(at + prefixBytes, at + 1, this.pos);
      this.pos += prefixBytes - 1;
    }
    this.varintAt(at, length);
    return this;
  }

  /** The message's bytes, copied out of the scratch buffer. */
  finish(): Uint8Array {
    if (this.forks.length > 0) throw new Error('ScratchWriter: finish with an open fork');
    return Uint8Array.prototype.slice.call(this.buffer, 0, this.pos);
  }

  private varintAt(at: number, value: number): number {
    return writeVarint(this.buffer, at, value);
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.pos + bytes));
    this.buffer.copy(grown, 0, 0, this.pos);
    this.buffer = grown;
  }
}

/** Writes `value` (an unsigned 32-bit integer) as a varint into `buffer` at `at`; returns where it ends. */
export function writeVarint(buffer: Uint8Array, at: number, value: number): number {
  let rest = value >>> 0;
  while (rest > 0x7f) {
    buffer[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  buffer[at++] = rest;
  return at;
}

/** How many bytes writeVarint writes for `value`. */
export function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value >>> 7; rest > 0; rest >>>= 7) bytes++;
  return bytes;
}
