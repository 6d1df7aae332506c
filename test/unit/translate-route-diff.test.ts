// The route diff behind incremental translation: against a plain set-based
// reference, on generated pairs of lists that share objects the way the store's
// revisions do (and lists that break the store's order).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Route } from '../../control-plane/src/model/index.ts';
import { diffSortedRoutes, isStrictlyByName } from '../../control-plane/src/translate/route-diff.ts';

const route = (name: string): Route => ({ name }) as Route;
const byName = (list: Route[]) => [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/** What the diff must say: membership by identity. */
function reference(previous: readonly Route[], next: readonly Route[]) {
  const before = new Set(previous);
  const after = new Set(next);
  return { added: next.filter((r) => !before.has(r)), removed: previous.filter((r) => !after.has(r)) };
}

// Names from a small alphabet so lists collide, replace and interleave often.
const names = fc.uniqueArray(fc.stringMatching(/^[a-c]{1,3}$/), { maxLength: 12 });

describe('translate: route diff', () => {
  it('finds exactly the added and removed routes when both lists are in name order', () => {
    // 500 generated cases; a wrong diff is deterministic, not statistical.
    fc.assert(
      fc.property(names, names, fc.array(fc.boolean(), { maxLength: 12 }), (before, after, replace) => {
        const previous = byName(before.map(route));
        const shared = new Map(previous.map((r) => [r.name, r]));
        // A name in both lists is the same object unless this case replaces it (a changed route).
        const next = byName(after.map((name, i) => (shared.has(name) && !replace[i] ? shared.get(name)! : route(name))));
        const diff = diffSortedRoutes(previous, next);
        assert.ok(diff, 'a sorted list always has a diff');
        assert.deepEqual(diff, reference(previous, next));
      }),
      { numRuns: 500 },
    );
  });

  it('gives no diff exactly when the next list is not strictly in name order', () => {
    // 500 generated cases: shuffles and duplicates of shared and new objects.
    fc.assert(
      fc.property(names, names, fc.array(fc.nat(40), { maxLength: 14 }), (before, others, picks) => {
        const previous = byName(before.map(route));
        // Shared objects, new objects under old names, new names.
        const pool = [...previous, ...before.map(route), ...others.map(route)];
        const next = pool.length === 0 ? [] : picks.map((k) => pool[k % pool.length]!);
        const diff = diffSortedRoutes(previous, next);
        assert.equal(diff !== undefined, isStrictlyByName(next));
        if (diff) assert.deepEqual(diff, reference(previous, next));
      }),
      { numRuns: 500 },
    );
  });

  it('isStrictlyByName: code-unit order, no repeats', () => {
    assert.equal(isStrictlyByName([]), true);
    assert.equal(isStrictlyByName(['B', 'a'].map(route)), true); // 'B' < 'a' in code units, as the store sorts
    assert.equal(isStrictlyByName(['a', 'a'].map(route)), false);
    assert.equal(isStrictlyByName(['b', 'a'].map(route)), false);
  });
});
