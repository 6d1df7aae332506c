// The make-before-break sequencing rules, without a network (the cache's NACK
// rule has its own file: xds-cache.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { TYPE, setVersion, type TypeUrl, type XdsResource } from '../../control-plane/src/xds/resources.ts';
import { makeSnapshot, type Snapshot } from '../../control-plane/src/xds/snapshot.ts';
import { StreamState } from '../../control-plane/src/xds/stream-state.ts';
import { subscription } from '../../control-plane/src/xds/sotw.ts';

function res(typeUrl: TypeUrl, name: string, version: string): XdsResource {
  return { typeUrl, name, version, value: new Uint8Array() };
}

/** A snapshot with one listener whose routes point at `cluster` (version tags stand for content). */
function config(revision: number, cluster: string, routeVersion: string): Snapshot {
  return makeSnapshot(revision, [
    res(TYPE.cluster, cluster, `c-${cluster}`),
    res(TYPE.endpoint, cluster, `e-${cluster}`),
    res(TYPE.listener, 'http', 'l1'),
    res(TYPE.route, 'routes', routeVersion),
  ]);
}

let nonce = 0;
/** Plays an Envoy: sends the due push, ACKs it (or NACKs), returns what was pushed. */
function step(stream: StreamState, snapshot: Snapshot, nack = false) {
  const push = stream.nextPush(snapshot);
  if (!push) return undefined;
  const state = stream.state(push.type);
  const id = String(++nonce);
  state.inFlight = { nonce: id, set: push.set, snapshot: push.snapshot };
  state.answered = true;
  stream.settle(push.type, id, nack);
  return { type: push.type, names: [...push.set.keys()].sort() };
}

function envoyLike(): StreamState {
  const stream = new StreamState();
  stream.state(TYPE.cluster).requested = true;
  stream.state(TYPE.listener).requested = true;
  return stream;
}

/** Plays a fresh Envoy through its first full sync to `snapshot` (one cluster 'a'). */
function syncFirst(stream: StreamState, snapshot: Snapshot) {
  step(stream, snapshot);
  subscribe(stream, TYPE.endpoint, ['a']);
  step(stream, snapshot);
  step(stream, snapshot);
  subscribe(stream, TYPE.route, ['routes']);
  step(stream, snapshot);
  assert.equal(stream.isSynced(snapshot), true);
}

function subscribe(stream: StreamState, type: TypeUrl, names: string[]) {
  const state = stream.state(type);
  state.requested = true;
  state.names = new Set(names);
}

test('initial sync goes clusters, endpoints, listeners, routes', () => {
  const stream = envoyLike();
  const s1 = config(1, 'a', 'r1');
  assert.deepEqual(step(stream, s1), { type: TYPE.cluster, names: ['a'] });
  // Listeners wait: the endpoints of cluster a are not ACKed yet.
  assert.equal(stream.nextPush(s1), undefined);
  subscribe(stream, TYPE.endpoint, ['a']);
  assert.deepEqual(step(stream, s1), { type: TYPE.endpoint, names: ['a'] });
  assert.deepEqual(step(stream, s1), { type: TYPE.listener, names: ['http'] });
  subscribe(stream, TYPE.route, ['routes']);
  assert.deepEqual(step(stream, s1), { type: TYPE.route, names: ['routes'] });
  assert.equal(stream.nextPush(s1), undefined);
  assert.equal(stream.isSynced(s1), true);
});

test('a cluster is removed only after the routes moved off it were ACKed', () => {
  const stream = envoyLike();
  const s1 = config(1, 'a', 'r1');
  syncFirst(stream, s1);

  const s2 = config(2, 'b', 'r2');
  // 1. union: a stays while b is added
  assert.deepEqual(step(stream, s2), { type: TYPE.cluster, names: ['a', 'b'] });
  // Routes wait until the client subscribed to, and ACKed, b's endpoints.
  assert.equal(stream.nextPush(s2), undefined);
  subscribe(stream, TYPE.endpoint, ['a', 'b']);
  assert.deepEqual(step(stream, s2), { type: TYPE.endpoint, names: ['a', 'b'] });
  // 2. routes move to b
  assert.deepEqual(step(stream, s2), { type: TYPE.route, names: ['routes'] });
  // 3. only now a goes
  assert.deepEqual(step(stream, s2), { type: TYPE.cluster, names: ['b'] });
  subscribe(stream, TYPE.endpoint, ['b']);
  assert.deepEqual(step(stream, s2), { type: TYPE.endpoint, names: ['b'] });
  assert.equal(stream.nextPush(s2), undefined);
  assert.equal(stream.isSynced(s2), true);
});

test('an unchanged type is not pushed again', () => {
  const stream = envoyLike();
  const s1 = config(1, 'a', 'r1');
  syncFirst(stream, s1);
  const s2 = config(2, 'a', 'r2');
  assert.deepEqual(step(stream, s2), { type: TYPE.route, names: ['routes'] });
  assert.equal(stream.nextPush(s2), undefined);
});

test('a NACKed response is not re-sent to the stream that rejected it', () => {
  const cache = new SnapshotCache();
  const stream = envoyLike();
  const s1 = config(1, 'a', 'r1');
  cache.setSnapshot('edge', s1);
  cache.join(1, 'edge', true);
  syncFirst(stream, s1);
  cache.markAccepted(1, s1);

  const s2 = config(2, 'a', 'r2-bad');
  cache.setSnapshot('edge', s2);
  const push = stream.nextPush(cache.servableFor(1))!;
  assert.equal(push.type, TYPE.route);
  stream.state(push.type).inFlight = { nonce: 'x', set: push.set, snapshot: push.snapshot };
  const result = stream.settle(push.type, 'x', true);
  assert.equal(result.kind, 'nack');
  cache.markRejected(1, s2);
  assert.equal(stream.nextPush(cache.servableFor(1)), undefined);
});

test('stale nonces change nothing', () => {
  const stream = envoyLike();
  const s1 = config(1, 'a', 'r1');
  const push = stream.nextPush(s1)!;
  stream.state(push.type).inFlight = { nonce: 'n1', set: push.set, snapshot: s1 };
  assert.equal(stream.settle(push.type, 'n0', false).kind, 'stale');
  assert.ok(stream.state(push.type).inFlight);
});

test('groups without a snapshot of their own keep falling back to the default one', () => {
  const cache = new SnapshotCache();
  const s1 = config(1, 'a', 'r1');
  cache.setSnapshot(SnapshotCache.DEFAULT_GROUP, s1);
  const sent = s1.types.get(TYPE.cluster)!;
  cache.remember('edge', sent);
  assert.equal(cache.servable('edge'), s1);
  assert.equal(cache.recall('edge', setVersion(sent)), sent);
});

test('SotW subscriptions: wildcard on first empty request, named after names, none after an empty list', () => {
  // First request with no names for a wildcard type: everything.
  assert.equal(subscription(TYPE.cluster, [], undefined, true), undefined);
  // Still no names later: still everything.
  assert.equal(subscription(TYPE.cluster, [], undefined, false), undefined);
  // Named, then an empty list: nothing (the client unsubscribed), not everything.
  const named = subscription(TYPE.cluster, ['a'], undefined, true);
  assert.deepEqual([...named!], ['a']);
  assert.deepEqual([...subscription(TYPE.cluster, [], named, false)!], []);
  // `*` always means everything; named types never become wildcards by omission.
  assert.equal(subscription(TYPE.cluster, ['*'], named, false), undefined);
  assert.deepEqual([...subscription(TYPE.endpoint, [], undefined, true)!], []);
});

test('the sets remembered for resuming clients are bounded in bytes as well as in number, newest kept', () => {
  const cache = new SnapshotCache();
  cache.setSnapshot(SnapshotCache.DEFAULT_GROUP, config(1, 'a', 'r1'));
  // Route tables of 3 MiB each (a 10,000-route gateway): 40 of them would be 120 MiB.
  const sets = Array.from({ length: 40 }, (_, i) => {
    const table: XdsResource = { typeUrl: TYPE.route, name: 'routes', version: `v${i}`, value: new Uint8Array(3 * 1024 * 1024) };
    return new Map([[table.name, table]]) as ReadonlyMap<string, XdsResource>;
  });
  for (const set of sets) cache.remember(SnapshotCache.DEFAULT_GROUP, set);
  const kept = sets.filter((set) => cache.recall(SnapshotCache.DEFAULT_GROUP, setVersion(set)) === set);
  // 32 MiB of history holds 10 of them; the newest are the ones kept.
  assert.deepEqual(kept, sets.slice(-10));
  // Small sets still go back 256.
  const small = Array.from({ length: 300 }, (_, i) => new Map([[`c${i}`, res(TYPE.cluster, `c${i}`, `s${i}`)]]) as ReadonlyMap<string, XdsResource>);
  for (const set of small) cache.remember(SnapshotCache.DEFAULT_GROUP, set);
  assert.equal(small.filter((set) => cache.recall(SnapshotCache.DEFAULT_GROUP, setVersion(set)) === set).length, 256);
});
