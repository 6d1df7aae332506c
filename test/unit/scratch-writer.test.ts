// The request path's protobuf writer against protobufjs' Writer: generated call
// sequences (every value kind, nested messages long enough to need multi-byte
// lengths, negative int32s, non-ASCII strings) must give the same bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { ScratchWriter } from '../../control-plane/src/proto/scratch-writer.ts';

type Op =
  | { kind: 'uint32'; value: number }
  | { kind: 'int32'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'double'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'bytes'; value: Uint8Array }
  | { kind: 'nested'; ops: Op[] };

const { op } = fc.letrec<{ op: Op }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('uint32' as const), value: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.nat({ max: 2 ** 32 - 1 })) }),
    fc.record({ kind: fc.constant('int32' as const), value: fc.oneof(fc.constantFrom(-1, -2, -128, -(2 ** 31), 2 ** 31 - 1), fc.integer({ min: -300, max: 300 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })) }),
    fc.record({ kind: fc.constant('bool' as const), value: fc.boolean() }),
    fc.record({ kind: fc.constant('double' as const), value: fc.double() }),
    fc.record({ kind: fc.constant('string' as const), value: fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ minLength: 100, maxLength: 20_000 })) }),
    fc.record({ kind: fc.constant('bytes' as const), value: fc.uint8Array({ maxLength: 3_000 }) }),
    fc.record({ kind: fc.constant('nested' as const), ops: fc.array(tie('op'), { maxLength: 6 }) }),
  ),
}));

function apply(writer: ScratchWriter | protobuf.Writer, ops: Op[]): void {
  for (const o of ops) {
    if (o.kind === 'nested') {
      writer.uint32((7 << 3) | 2).fork();
      apply(writer, o.ops);
      writer.ldelim();
    } else if (o.kind === 'string') writer.string(o.value);
    else if (o.kind === 'bytes') writer.bytes(o.value);
    else if (o.kind === 'bool') writer.bool(o.value);
    else if (o.kind === 'double') writer.double(o.value);
    else if (o.kind === 'int32') writer.int32(o.value);
    else writer.uint32(o.value);
  }
}

test('scratch writer: the same bytes as protobufjs for generated call sequences, one writer reused throughout', () => {
  const scratch = new ScratchWriter();
  fc.assert(
    fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const reference = protobuf.Writer.create();
      apply(reference, ops);
      apply(scratch.reset(), ops);
      assert.deepEqual(Buffer.from(scratch.finish()), Buffer.from(reference.finish()));
    }),
    { numRuns: 400, seed: 44 },
  );
});

test('scratch writer: an unbalanced message is refused, and reset recovers from one abandoned mid-way', () => {
  const writer = new ScratchWriter();
  assert.throws(() => writer.reset().ldelim(), /ldelim without fork/);
  assert.throws(() => writer.reset().fork().finish(), /open fork/);
  assert.deepEqual([...writer.reset().uint32(300).finish()], [0xac, 0x02]);
});
