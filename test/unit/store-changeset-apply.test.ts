// A change set applied by sorted-list edits (applyChangeSetWithDiff, O(change))
// must equal it applied the whole way (every object of the kind into a map,
// then a sort: what a replica did before): the same config text, the same
// credential keys; and the diff it reports must be the one diffConfigs finds
// between before and after. Random heads (parsed, sorted, frozen, as the store
// keeps them) and random change sets of puts (new, changed, equal in content)
// and deletions, on a small name pool so that names collide often.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KINDS, DeclarativeConfigSchema, type DeclarativeConfig, type Kind } from '../../control-plane/src/model/index.ts';
import { diffConfigs, type ObjectSpec } from '../../control-plane/src/store/draft.ts';
import { deepFreeze } from '../../control-plane/src/store/frozen.ts';
import { applyChangeSetWithDiff, sortedKeys, type ChangeSet, type CredentialKey, type RevisionSnapshot } from '../../control-plane/src/store/revision-history.ts';

const NAMES = ['a', 'b', 'c', 'd', 'e'];
const SET_KINDS = ['upstreams', 'routes', 'consumers'] as const satisfies readonly Kind[];
type SetKind = (typeof SET_KINDS)[number];

function rawSpec(kind: SetKind, name: string, variant: number): Record<string, unknown> {
  switch (kind) {
    case 'upstreams':
      return { name, endpoints: [{ host: '127.0.0.1', port: 8080 + variant }] };
    case 'routes':
      return { name, match: { path: { prefix: `/${name}/${variant}` } }, action: { upstream: 'a' } };
    case 'consumers':
      return { name, tags: [`t${variant}`] };
  }
}

const specsArb = (kind: SetKind) => fc.subarray(NAMES).chain((names) => fc.tuple(...names.map((name) => fc.integer({ min: 0, max: 2 }).map((v) => rawSpec(kind, name, v)))));
const keysArb = fc.dictionary(fc.constantFrom(...NAMES), fc.constantFrom('h1', 'h2').map((hash) => ({ hash, prefix: `p_${hash}` })));

const headArb = fc.record({ upstreams: specsArb('upstreams'), routes: specsArb('routes'), consumers: specsArb('consumers'), keys: keysArb }).map(({ keys, ...lists }) => {
  const config = DeclarativeConfigSchema.parse(lists);
  for (const kind of KINDS) (config[kind] as ObjectSpec[]).sort((x, y) => (x.name < y.name ? -1 : 1));
  return deepFreeze({ config, credential_keys: sortedKeys(keys) }) as RevisionSnapshot;
});

/** Stored change sets hold JSON: puts are plain specs, each name at most once per kind. */
const changeSetArb: fc.Arbitrary<ChangeSet> = fc
  .record({
    put: fc.record({ upstreams: specsArb('upstreams'), routes: specsArb('routes'), consumers: specsArb('consumers') }),
    deleted: fc.record({ upstreams: fc.subarray(NAMES), routes: fc.subarray(NAMES), consumers: fc.subarray(NAMES) }),
    keys_put: keysArb,
    keys_deleted: fc.subarray(NAMES),
  })
  .map((c) => JSON.parse(JSON.stringify(c)) as ChangeSet);

/** The whole-kind way: every object into a map, deletions then puts, then sorted. */
function applyWhole(base: RevisionSnapshot, changes: ChangeSet): RevisionSnapshot {
  const put = DeclarativeConfigSchema.parse(changes.put);
  const config = { ...base.config };
  for (const kind of KINDS) {
    const gone = changes.deleted[kind] ?? [];
    const fresh = put[kind] as ObjectSpec[];
    if (gone.length === 0 && fresh.length === 0) continue;
    const byName = new Map((base.config[kind] as ObjectSpec[]).map((o) => [o.name, o]));
    for (const name of gone) byName.delete(name);
    for (const spec of fresh) byName.set(spec.name, spec);
    (config[kind] as ObjectSpec[]) = [...byName.values()].sort((x, y) => (x.name < y.name ? -1 : 1));
  }
  const keys: Record<string, CredentialKey> = { ...base.credential_keys };
  for (const name of changes.keys_deleted) delete keys[name];
  Object.assign(keys, changes.keys_put);
  return { config, credential_keys: sortedKeys(keys) };
}

test('a change set applied by sorted-list edits equals it applied whole, and reports the diff diffConfigs finds', () => {
  fc.assert(
    fc.property(headArb, changeSetArb, (head, changes) => {
      const { snapshot, diff } = applyChangeSetWithDiff(head, changes);
      assert.equal(JSON.stringify(snapshot), JSON.stringify(applyWhole(head, changes)));
      const copy = (config: DeclarativeConfig) => Object.fromEntries(KINDS.map((k) => [k, [...config[k]]])) as unknown as DeclarativeConfig;
      assert.deepEqual(diff, diffConfigs(head.config, copy(snapshot.config)));
      // Untouched kinds are the head's own lists; untouched objects the head's own objects.
      for (const kind of KINDS) {
        const touched = (changes.put[kind]?.length ?? 0) + (changes.deleted[kind]?.length ?? 0) > 0;
        if (!touched) assert.equal(snapshot.config[kind], head.config[kind]);
      }
      const changedNames = new Set(diff.map((d) => `${d.kind}/${d.name}`));
      for (const kind of KINDS) {
        const before = new Map((head.config[kind] as ObjectSpec[]).map((o) => [o.name, o]));
        for (const o of snapshot.config[kind] as ObjectSpec[]) if (!changedNames.has(`${kind}/${o.name}`) && before.has(o.name)) assert.equal(o, before.get(o.name));
      }
    }),
    { numRuns: 500 },
  );
});
