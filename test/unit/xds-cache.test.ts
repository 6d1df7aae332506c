// The snapshot cache's NACK rule (xds/cache.ts header), without a network: one
// node's NACK never withholds a snapshot from the others, what a node rejected
// is its own, and a newcomer never gets nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { TYPE, type TypeUrl, type XdsResource } from '../../control-plane/src/xds/resources.ts';
import { makeSnapshot, type Snapshot } from '../../control-plane/src/xds/snapshot.ts';
import { StreamState } from '../../control-plane/src/xds/stream-state.ts';

function res(typeUrl: TypeUrl, name: string, version: string): XdsResource {
  return { typeUrl, name, version, value: new Uint8Array() };
}

/** A snapshot whose route table has content `routes` (equal tags mean equal content). */
function config(revision: number, routes: string, clusters = ['a']): Snapshot {
  return makeSnapshot(revision, [
    ...clusters.flatMap((c) => [res(TYPE.cluster, c, `c-${c}`), res(TYPE.endpoint, c, `e-${c}`)]),
    res(TYPE.listener, 'http', 'l1'),
    res(TYPE.route, 'routes', routes),
  ]);
}

const G = 'edge';
const A = 1;
const B = 2;
const NEWCOMER = 99;

/** A cache with s1 accepted by A and B (both counted), then s2 published. */
function twoNodes() {
  const cache = new SnapshotCache();
  const s1 = config(1, 'r1');
  cache.setSnapshot(G, s1);
  cache.join(A, G, true);
  cache.join(B, G, true);
  cache.markAccepted(A, s1);
  cache.markAccepted(B, s1);
  const s2 = config(2, 'r2');
  cache.setSnapshot(G, s2);
  return { cache, s1, s2 };
}

test('A ACKs and B NACKs: A keeps the snapshot, only B falls back, a newcomer gets the one nobody rejected', () => {
  const { cache, s1, s2 } = twoNodes();
  cache.markAccepted(A, s2);
  cache.markRejected(B, s2);
  assert.equal(cache.servableFor(A), s2, 'B\'s NACK does not move A');
  assert.equal(cache.servableFor(B), s1, 'B is not re-sent what it rejected');
  assert.equal(cache.servable(G), s1, 'newest snapshot no node rejected');
  // The next newer snapshot reaches B again.
  const s3 = config(3, 'r3');
  cache.setSnapshot(G, s3);
  assert.equal(cache.servableFor(B), s3);
  assert.equal(cache.servable(G), s3);
});

test('every node NACKs: all fall back to the last accepted snapshot, and so does a newcomer', () => {
  const { cache, s1, s2 } = twoNodes();
  cache.markRejected(A, s2);
  cache.markRejected(B, s2);
  assert.equal(cache.servableFor(A), s1);
  assert.equal(cache.servableFor(B), s1);
  cache.join(NEWCOMER, G);
  assert.equal(cache.servableFor(NEWCOMER), s1);
});

test('NACK then revert: the reverted content reaches everyone, including content NACKed earlier', () => {
  const { cache, s1, s2 } = twoNodes();
  cache.markRejected(A, s2);
  cache.markRejected(B, s2);
  // Revert to s1's content: a new revision everyone holds already.
  const s3 = config(3, 'r1');
  assert.equal(s3.version, s1.version);
  cache.setSnapshot(G, s3);
  assert.equal(cache.servableFor(A), s3);
  assert.equal(cache.servableFor(B), s3);
  // Reverting to the very content that was NACKed (say the cause was fixed) sends it again.
  const s4 = config(4, 'r2');
  assert.equal(s4.version, s2.version);
  cache.setSnapshot(G, s4);
  assert.equal(cache.servableFor(A), s4);
  assert.equal(cache.servableFor(B), s4);
  assert.equal(cache.servable(G), s4);
});

test('an attacker\'s NACK steers newcomers only while it is connected, and never leaves them nothing', () => {
  const cache = new SnapshotCache();
  const s1 = config(1, 'r1');
  cache.setSnapshot(G, s1);
  const attacker = 7;
  cache.join(attacker, G);
  cache.markRejected(attacker, s1);
  // It never ACKed: its NACK does not count for anyone else.
  assert.equal(cache.servable(G), s1);
  // It ACKs once (so it counts) and NACKs the first snapshot ever: nothing was
  // accepted, yet newcomers still get the newest one, never nothing.
  cache.trust(attacker);
  assert.equal(cache.servable(G), s1);
  // With an accepted snapshot behind it, the counted NACK sends newcomers there ...
  cache.join(A, G, true);
  cache.markAccepted(A, s1);
  const s2 = config(2, 'r2');
  cache.setSnapshot(G, s2);
  cache.markRejected(attacker, s2);
  assert.equal(cache.servable(G), s1);
  assert.equal(cache.servableFor(A), s2, 'connected nodes are not moved by it');
  // ... until it disconnects: its verdicts go with it.
  cache.leave(attacker);
  assert.equal(cache.servable(G), s2);
  assert.equal(cache.servableFor(attacker), undefined, 'no state left for a closed stream');
});

test('republishing equal content relabels the snapshot without re-sending it to a node that rejected it', () => {
  const { cache, s1, s2 } = twoNodes();
  cache.markAccepted(A, s2);
  cache.markRejected(B, s2);
  const s3 = config(3, 'r2'); // e.g. a new consumer: nothing Envoy holds changed
  cache.setSnapshot(G, s3);
  assert.equal(cache.servableFor(A), s3, 'A holds it under the new revision');
  assert.equal(cache.servableFor(B), s1, 'B is not sent it again');
  assert.equal(cache.current(G)?.revision, 3);
});

test('a node that rejects the newest snapshot while a newer one is out keeps the newer one', () => {
  const { cache, s2 } = twoNodes();
  const s3 = config(3, 'r3');
  cache.setSnapshot(G, s3);
  // B's NACK of s2 arrives after s3 was published: B moves on to s3, not back.
  cache.markRejected(B, s2);
  assert.equal(cache.servableFor(B), s3);
});

test('a node that rejected everything there is holds what it has (nothing is pushed)', () => {
  const cache = new SnapshotCache();
  const s1 = config(1, 'r1');
  cache.setSnapshot(G, s1);
  cache.join(A, G, true);
  cache.markRejected(A, s1);
  assert.equal(cache.servableFor(A), undefined);
  assert.equal(cache.servable(G), s1, 'a newcomer still gets a snapshot');
});

test('a NACK of a new EDS cluster on one stream leaves the other stream\'s endpoint push due', () => {
  const cache = new SnapshotCache();
  const s1 = config(1, 'r1');
  cache.setSnapshot(G, s1);
  cache.join(A, G, true);
  cache.join(B, G, true);
  const s2 = config(2, 'r2', ['a', 'new']);
  cache.setSnapshot(G, s2);
  // A took the clusters and now asks for the new cluster's endpoints; B rejected the clusters.
  const a = new StreamState();
  for (const type of [TYPE.cluster, TYPE.listener]) a.state(type).requested = true;
  a.state(TYPE.cluster).acked = s2.types.get(TYPE.cluster)!;
  a.state(TYPE.cluster).answered = true;
  a.state(TYPE.endpoint).requested = true;
  a.state(TYPE.endpoint).names = new Set(['a', 'new']);
  cache.markRejected(B, s2);
  const push = a.nextPush(cache.servableFor(A));
  assert.equal(push?.type, TYPE.endpoint);
  assert.deepEqual([...push!.set.keys()].sort(), ['a', 'new']);
});

test('registry: a second stream with a live node id replaces the first; closed streams leave nothing', () => {
  const registry = new NodeRegistry();
  let evicted = 0;
  registry.connect({ streamId: 1, nodeId: 'n', group: G, protocol: 'sotw', connectedAt: '' }, () => evicted++);
  registry.recordAck(1, TYPE.cluster, 'v');
  registry.recordSynced(1, 5);
  registry.connect({ streamId: 2, nodeId: 'n', group: G, protocol: 'delta', connectedAt: '' });
  assert.equal(evicted, 1);
  assert.deepEqual(registry.list().map((n) => n.streamId), [2]);
  assert.equal(registry.revisionTally(5).accepted, 0, 'the old stream\'s tally went with it');
  assert.equal(registry.counts(2), false, 'the new stream has not ACKed yet');
  registry.disconnect(2);
  assert.deepEqual(registry.list(), []);
});

test('a group keeps verdicts on fewer snapshots when they are large (bytes bound), never fewer than 8', () => {
  const big = (revision: number) =>
    makeSnapshot(revision, [{ typeUrl: TYPE.route, name: 'routes', version: `big-${revision}`, value: new Uint8Array(3 * 1024 * 1024) }]);
  for (const [make, kept] of [[big, false], [(r: number) => config(r, `small-${r}`), true]] as const) {
    const cache = new SnapshotCache();
    const first = make(1);
    cache.setSnapshot(G, first);
    cache.join(A, G, true);
    cache.markAccepted(A, first);
    // 25 newer snapshots: within the 32 kept by number, past the 64 MiB kept by bytes when each is 3 MiB.
    for (let r = 2; r <= 26; r++) cache.setSnapshot(G, make(r));
    assert.equal(cache.lastAccepted(G) === first, kept);
  }
  // Nine of 40 MiB each: all over the budget; the newest 8 are kept all the same.
  const huge = (revision: number) =>
    makeSnapshot(revision, [{ typeUrl: TYPE.route, name: 'routes', version: `huge-${revision}`, value: new Uint8Array(40 * 1024 * 1024) }]);
  for (const [accepted, kept] of [[1, true], [0, false]] as const) {
    const cache = new SnapshotCache();
    cache.join(A, G, true);
    const snapshots = Array.from({ length: 9 }, (_, i) => huge(i + 1));
    snapshots.forEach((s, i) => {
      cache.setSnapshot(G, s);
      if (i === accepted) cache.markAccepted(A, s);
    });
    assert.equal(cache.lastAccepted(G) === snapshots[accepted], kept, `snapshot ${accepted}`);
  }
});
