// A commit's change worked out from the objects a plan wrote (Draft.plannedChange,
// O(change)) must equal the one the whole-config path works out (normalise +
// diffConfigs, O(config)): the same next config (sorted, the head's objects
// carried over as the same objects, new ones parsed and frozen), the same diff
// in the same order, the same refusal with the same issues. Random heads and
// random plans of creates, replaces (new content, equal content, the head's own
// object) and deletes, on small name pools so that a plan often touches one
// name twice (create then delete, delete then recreate, cascades from a
// consumer to its credentials), and with some objects the schema refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KINDS, DeclarativeConfigSchema, type DeclarativeConfig, type Kind } from '../../control-plane/src/model/index.ts';
import { Draft, wholeChange, type ObjectSpec, type PlannedChange } from '../../control-plane/src/store/draft.ts';
import { deepFreeze } from '../../control-plane/src/store/frozen.ts';
import { StoreError } from '../../control-plane/src/store/store-error.ts';

const NAMES = ['a', 'b', 'c', 'd'];
const PLAN_KINDS = ['upstreams', 'routes', 'consumers', 'credentials'] as const satisfies readonly Kind[];
type PlanKind = (typeof PLAN_KINDS)[number];

/** A raw (unparsed) spec: the schema fills in defaults; variant 3 makes one the schema refuses. */
function rawSpec(kind: PlanKind, name: string, variant: number): Record<string, unknown> {
  switch (kind) {
    case 'upstreams':
      return { name, endpoints: [{ host: '127.0.0.1', port: variant === 3 ? 0 : 8080 + variant }] };
    case 'routes':
      return { name, match: { path: { prefix: `/${name}/${variant}` } }, action: { upstream: 'a' }, ...(variant === 3 ? { priority: -5 } : {}) };
    case 'consumers':
      return { name, ...(variant === 3 ? { tags: [''] } : { tags: [`t${variant}`] }) };
    case 'credentials':
      return { name, consumer: NAMES[variant % NAMES.length], kind: 'api_key' };
  }
}

/** A head config as the store keeps one: parsed, sorted by name, frozen. */
const headArb = fc
  .record(Object.fromEntries(PLAN_KINDS.map((kind) => [kind, fc.subarray(NAMES).chain((names) => fc.tuple(...names.map((name) => fc.integer({ min: 0, max: 2 }).map((v) => rawSpec(kind, name, v)))))])) as Record<PlanKind, fc.Arbitrary<Array<Record<string, unknown>>>>)
  .map((lists) => {
    const parsed = DeclarativeConfigSchema.parse(lists);
    for (const kind of KINDS) (parsed[kind] as ObjectSpec[]).sort((x, y) => (x.name < y.name ? -1 : 1));
    return deepFreeze(parsed);
  });

type Op =
  | { op: 'create'; kind: PlanKind; name: string; variant: number; parsed: boolean }
  | { op: 'replace'; kind: PlanKind; name: string; how: 'new' | 'equal' | 'own'; variant: number; parsed: boolean }
  | { op: 'delete'; kind: PlanKind; name: string };

const kindArb = fc.constantFrom(...PLAN_KINDS);
const nameArb = fc.constantFrom(...NAMES);
const variantArb = fc.integer({ min: 0, max: 3 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), kind: kindArb, name: nameArb, variant: variantArb, parsed: fc.boolean() }),
  fc.record({ op: fc.constant('replace' as const), kind: kindArb, name: nameArb, how: fc.constantFrom('new' as const, 'equal' as const, 'own' as const), variant: variantArb, parsed: fc.boolean() }),
  fc.record({ op: fc.constant('delete' as const), kind: kindArb, name: nameArb }),
);

/** Runs the ops a plan could run (those the draft refuses, e.g. creating what exists, are skipped). */
function runPlan(draft: Draft, ops: Op[]): void {
  for (const op of ops) {
    const current = draft.get(op.kind, op.name);
    if (op.op === 'delete') {
      if (current) draft.delete(op.kind, op.name);
      continue;
    }
    if ((op.op === 'create') === (current !== undefined)) continue;
    let spec: ObjectSpec;
    if (op.op === 'replace' && op.how === 'own') spec = current!;
    else if (op.op === 'replace' && op.how === 'equal') spec = structuredClone(current!) as ObjectSpec; // equal content, another object
    else {
      const raw = rawSpec(op.kind, op.name, op.variant);
      const parsed = op.parsed && op.variant !== 3;
      spec = (parsed ? (DeclarativeConfigSchema.parse({ [op.kind]: [raw] }) as DeclarativeConfig)[op.kind][0]! : raw) as ObjectSpec;
      if (parsed) draft.parsed.add(spec);
    }
    if (op.op === 'create') draft.create(op.kind, spec);
    else draft.replace(op.kind, op.name, spec);
  }
}

type Outcome = { change: PlannedChange } | { refused: StoreError };

function outcome(work: () => PlannedChange | undefined): Outcome {
  try {
    const change = work();
    assert.ok(change, 'the incremental path applies to object writes on a sorted head');
    return { change };
  } catch (err) {
    if (err instanceof StoreError) return { refused: err };
    throw err;
  }
}

/** Equal results, and the head's objects carried over as the very same objects in both. */
function assertSame(head: DeclarativeConfig, incremental: Outcome, full: Outcome): void {
  if ('refused' in full || 'refused' in incremental) {
    assert.ok('refused' in full && 'refused' in incremental, `one path refused, the other did not: ${JSON.stringify('refused' in full ? full.refused.issues : 'refused' in incremental ? incremental.refused.issues : '')}`);
    assert.equal(incremental.refused.code, full.refused.code);
    assert.deepEqual(incremental.refused.issues, full.refused.issues);
    return;
  }
  const { next: a, diff: da } = incremental.change;
  const { next: b, diff: db } = full.change;
  assert.deepEqual(da, db);
  assert.deepEqual(a, b);
  for (const kind of KINDS) {
    const heads = new Set(head[kind] as object[]);
    const listA = a[kind] as object[];
    const listB = b[kind] as object[];
    listA.forEach((object, i) => {
      assert.equal(heads.has(object), heads.has(listB[i]!), `${kind}[${i}]: carried over in one path only`);
      if (heads.has(object)) assert.equal(object, listB[i]);
      assert.ok(Object.isFrozen(object), `${kind}[${i}] frozen`);
    });
    for (let i = 1; i < listA.length; i++) assert.ok((listA[i - 1] as { name: string }).name < (listA[i] as { name: string }).name, `${kind} sorted by unique names`);
  }
  for (const entry of da) {
    if (entry.before) assert.equal(entry.before, (head[entry.kind] as ObjectSpec[]).find((o) => o.name === entry.name), 'before is the head object');
  }
}

test('a change worked out from the objects written equals the whole-config one (random heads and plans)', () => {
  let changes = 0;
  let refusals = 0;
  let noOps = 0;
  fc.assert(
    fc.property(headArb, fc.array(opArb, { minLength: 1, maxLength: 6 }), (head, ops) => {
      const draft = new Draft(head, {});
      runPlan(draft, ops);
      const full = outcome(() => wholeChange(draft, head));
      const incremental = outcome(() => draft.plannedChange());
      assertSame(head, incremental, full);
      if ('refused' in full) refusals += 1;
      else if (full.change.diff.length === 0) noOps += 1;
      else changes += 1;
    }),
    { numRuns: 2_000, seed: 1207 },
  );
  // The corpus has all three outcomes in volume (fixed seed: deterministic; this run: ~1,270 / ~190 / ~550).
  assert.ok(changes > 500 && refusals > 100 && noOps > 50, `changes ${changes}, refusals ${refusals}, no-ops ${noOps}`);
});

test('object writes leave the lists they do not touch as the head has them (the same frozen arrays)', () => {
  const head = deepFreeze(DeclarativeConfigSchema.parse({ upstreams: [rawSpec('upstreams', 'a', 0)], routes: [rawSpec('routes', 'a', 0), rawSpec('routes', 'b', 0)] }));
  const draft = new Draft(head, {});
  draft.create('routes', rawSpec('routes', 'c', 1) as ObjectSpec);
  const change = draft.plannedChange()!;
  assert.equal(change.next.upstreams, head.upstreams);
  assert.notEqual(change.next.routes, head.routes);
  assert.ok(Object.isFrozen(change.next.routes));
  assert.deepEqual(change.diff.map((d) => [d.op, d.kind, d.name]), [['create', 'routes', 'c']]);
  assert.equal(change.next.routes[0], head.routes[0]);
});

test('replaceAll goes the whole-config way; only an unedited, validated whole config is vouched for', () => {
  const head = deepFreeze(DeclarativeConfigSchema.parse({ upstreams: [rawSpec('upstreams', 'a', 0)] }));
  const config = DeclarativeConfigSchema.parse({ upstreams: [rawSpec('upstreams', 'b', 0)], routes: [rawSpec('routes', 'r', 0)] });
  const draft = new Draft(head, {});
  draft.replaceAll(config, undefined, { parsed: true, validated: true });
  assert.equal(draft.plannedChange(), undefined);
  assert.equal(draft.validatedWhole, true);
  draft.replace('routes', 'r', { ...config.routes[0]!, action: { upstream: 'missing' } } as ObjectSpec);
  assert.equal(draft.validatedWhole, false, 'an edit after replaceAll is checked by the commit');
  const again = new Draft(head, {});
  again.replaceAll(config, undefined, { validated: true });
  assert.equal(again.validatedWhole, false, 'not parsed: not vouched for');
});
