// The translation cache decides "same content" without serializing (translate/route-config.ts):
// sameJson must agree with comparing JSON.stringify outputs, which is what the cache compared before.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { sameJson } from '../../control-plane/src/translate/route-config.ts';

/** JSON-ish values plus what JSON drops or rewrites: undefined members, non-finite numbers. */
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(fc.constantFrom<unknown>(null, undefined, true, false, 0, -0, 1, Number.NaN, Number.POSITIVE_INFINITY), fc.integer({ min: -3, max: 3 }), fc.constantFrom('', 'a', 'b', '1')),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b', 'c'), tie('node'), { maxKeys: 3 })),
})).node;

/** A copy with new objects, equal content (as a State read back from Postgres). */
function rebuilt(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(rebuilt);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rebuilt(x)]));
  return v;
}

describe('translate: sameJson (the translation cache content comparison)', () => {
  it('agrees with comparing JSON.stringify, on random pairs and on rebuilt copies', () => {
    fc.assert(
      fc.property(value, value, (a, b) => {
        assert.equal(sameJson(a, b), JSON.stringify(a) === JSON.stringify(b));
        assert.equal(sameJson(a, rebuilt(a)), true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('tells member order and dropped members as JSON does', () => {
    assert.equal(sameJson({ a: 1, b: 2 }, { b: 2, a: 1 }), false); // the order the encoder walks
    assert.equal(sameJson({ a: 1, b: undefined }, { a: 1 }), true);
    assert.equal(sameJson([undefined], [null]), true);
    assert.equal(sameJson({ a: [1, { b: 'x' }] }, { a: [1, { b: 'y' }] }), false);
  });
});
