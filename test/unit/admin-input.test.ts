// The body checks at the admin API's edge (admin/input.ts findUnsafeInput) and
// the model's text rule (model/common.ts unsafeTextIssues) first walk a value
// without building paths, and only walk it again, naming fields, when something
// is wrong. Their answers must be exactly those of a plain recursive reading of
// the rules: random JSON-like values with, now and then, a NUL, a lone
// surrogate, a forbidden key, a non-plain object or too much depth.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { findUnsafeInput } from '../../control-plane/src/admin/input.ts';
import { unsafeTextIssues, type Issue } from '../../control-plane/src/model/index.ts';

const badString = fc.constantFrom('a\u0000b', '\uD800', 'x\uDC00', '\u0000');
const text = fc.oneof({ weight: 5, arbitrary: fc.string({ maxLength: 4 }) }, { weight: 1, arbitrary: badString });
const key = fc.oneof({ weight: 5, arbitrary: fc.constantFrom('a', 'b', 'name', 'x-y') }, { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'k\u0000', '\uDBFF') });

const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text,
    fc.integer(),
    fc.constant(null),
    fc.boolean(),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.array(fc.tuple(key, tie('value')), { maxLength: 3 }).map((entries) => {
      const object: Record<string, unknown> = {};
      for (const [k, v] of entries) Object.defineProperty(object, k, { value: v, enumerable: true, writable: true, configurable: true });
      return object;
    }),
    fc.constant(new Map()),
  ),
}));

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The edge's rules read plainly: the first offence in document order, with its dotted path. */
function oracleInput(root: unknown, maxDepth: number): { path: string; message: string } | undefined {
  const walk = (v: unknown, path: (string | number)[], depth: number): { path: string; message: string } | undefined => {
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return { path: path.join('.'), message: 'must not contain NUL (\\u0000)' };
      if (LONE_SURROGATE.test(v)) return { path: path.join('.'), message: 'must not contain a lone UTF-16 surrogate' };
      return undefined;
    }
    if (typeof v !== 'object' || v === null) return undefined;
    const proto: unknown = Object.getPrototypeOf(v);
    if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) return { path: path.join('.'), message: 'must be a JSON value (object, array, string, number, boolean or null)' };
    if (depth >= maxDepth) return { path: path.join('.'), message: `nested deeper than ${maxDepth} levels` };
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const found = walk(v[i], [...path, i], depth + 1);
        if (found) return found;
      }
      return undefined;
    }
    const entries = Object.entries(v);
    // Keys are checked as the object is entered (all of them), then the values in order.
    for (const [k] of entries) {
      const keyPath = [...path, k].join('.');
      if (['__proto__', 'constructor', 'prototype'].includes(k)) return { path: keyPath, message: `'${k}' is not allowed as a key` };
      if (k.includes('\u0000')) return { path: keyPath, message: 'key must not contain NUL (\\u0000)' };
      if (LONE_SURROGATE.test(k)) return { path: keyPath, message: 'key must not contain a lone UTF-16 surrogate' };
    }
    for (const [k, item] of entries) {
      const found = walk(item, [...path, k], depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(root, [], 0);
}

/** The text rule read plainly: every bad string value or key (a bad key's value is not looked into). */
function oracleText(root: unknown): Issue[] {
  const issues: Issue[] = [];
  const bad = (s: string) => (/\0|\p{Cs}/u.test(s) ? (s.includes('\0') ? 'must not contain NUL (\\u0000)' : 'must be valid Unicode (it contains a lone surrogate)') : undefined);
  const walk = (v: unknown, path: (string | number)[]): void => {
    if (typeof v === 'string') {
      const problem = bad(v);
      if (problem) issues.push({ path, message: problem });
    } else if (Array.isArray(v)) v.forEach((item, i) => walk(item, [...path, i]));
    else if (typeof v === 'object' && v !== null) {
      for (const [k, item] of Object.entries(v)) {
        const problem = bad(k);
        if (problem) issues.push({ path, message: `a key ${problem}` });
        else walk(item, [...path, k]);
      }
    }
  };
  walk(root, []);
  return issues;
}

test('findUnsafeInput answers exactly as the rules read plainly (random values, some hostile)', () => {
  let refused = 0;
  fc.assert(
    fc.property(value, fc.integer({ min: 1, max: 4 }), (v, maxDepth) => {
      const expected = oracleInput(v, maxDepth);
      assert.deepEqual(findUnsafeInput(v, maxDepth), expected);
      if (expected) refused += 1;
    }),
    { numRuns: 3_000, seed: 1212 },
  );
  assert.ok(refused > 300 && refused < 2_700, `refused ${refused} of 3000`); // both answers in volume (fixed seed; this run: ~880)
});

test('unsafeTextIssues reports every bad string and key, as the rule reads plainly (random values)', () => {
  let flagged = 0;
  fc.assert(
    fc.property(value, (v) => {
      const expected = oracleText(v);
      // The same issues; their order is the walk's own (a stack's), not document order, and not what this checks.
      const sorted = (issues: Issue[]) => issues.map((i) => JSON.stringify(i)).sort();
      assert.deepEqual(sorted(unsafeTextIssues(v)), sorted(expected));
      if (expected.length > 0) flagged += 1;
    }),
    { numRuns: 3_000, seed: 1213 },
  );
  assert.ok(flagged > 150 && flagged < 2_700, `flagged ${flagged} of 3000`); // both answers in volume (fixed seed; this run: ~190)
});
