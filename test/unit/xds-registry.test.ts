// The node registry's running answers against brute force over its own list:
// `?wait=applied` asks countedBehind on every ACK, so it is kept incrementally
// (a histogram of counted nodes by synced revision) instead of listing the
// fleet; random connect/ACK/sync/NACK/disconnect sequences must never make the
// two disagree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NodeRegistry, nodeCounts } from '../../control-plane/src/xds/registry.ts';
import { TYPE } from '../../control-plane/src/xds/resources.ts';

type Op =
  | { kind: 'connect'; stream: number; node: number; authenticated: boolean }
  | { kind: 'ack'; stream: number }
  | { kind: 'confirm'; stream: number }
  | { kind: 'sync'; stream: number; revision: number }
  | { kind: 'nack'; stream: number; revision: number }
  | { kind: 'slow'; stream: number; on: boolean }
  | { kind: 'disconnect'; stream: number };

// Few streams, node ids and revisions, so collisions (evictions, repeats) are common.
const stream = fc.integer({ min: 1, max: 8 });
const revision = fc.integer({ min: 0, max: 6 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('connect' as const), stream, node: fc.integer({ min: 1, max: 5 }), authenticated: fc.boolean() }),
  fc.record({ kind: fc.constant('ack' as const), stream }),
  fc.record({ kind: fc.constant('confirm' as const), stream }),
  fc.record({ kind: fc.constant('sync' as const), stream, revision }),
  fc.record({ kind: fc.constant('nack' as const), stream, revision }),
  fc.record({ kind: fc.constant('slow' as const), stream, on: fc.boolean() }),
  fc.record({ kind: fc.constant('disconnect' as const), stream }),
);

function apply(registry: NodeRegistry, o: Op): void {
  switch (o.kind) {
    case 'connect':
      // A stream id connects once in the server; reconnecting one here would be a second registration of it.
      if (registry.get(o.stream)) return;
      registry.connect({ streamId: o.stream, nodeId: `node-${o.node}`, group: 'g', protocol: 'sotw', connectedAt: new Date(0).toISOString(), authenticated: o.authenticated });
      return;
    case 'ack':
      return registry.recordAck(o.stream, TYPE.route, `v${o.stream}`);
    case 'confirm':
      return registry.recordConfirmed(o.stream);
    case 'sync':
      return registry.recordSynced(o.stream, o.revision);
    case 'nack':
      return registry.recordNack(o.stream, { typeUrl: TYPE.route, revision: o.revision, message: 'no', at: new Date(0).toISOString() });
    case 'slow':
      return registry.recordSlow(o.stream, o.on ? { pendingSince: new Date(0).toISOString(), pendingTypes: [TYPE.route], writeBacklog: 1 } : undefined);
    case 'disconnect':
      return registry.disconnect(o.stream);
  }
}

/** What `?wait=applied` used to compute: list everything, keep the counted, compare revisions. */
function bruteBehind(registry: NodeRegistry, r: number): number {
  return registry.list().filter(nodeCounts).filter((node) => (node.syncedRevision ?? -1) < r).length;
}

test('countedBehind equals the brute-force count after every step of random sequences', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const registry = new NodeRegistry();
      for (const o of ops) {
        apply(registry, o);
        for (let r = 0; r <= 7; r++) assert.equal(registry.countedBehind(r), bruteBehind(registry, r), `revision ${r} after ${JSON.stringify(o)}`);
        assert.deepEqual(registry.nodeIds().sort(), registry.list().map((n) => n.nodeId).sort());
      }
    }),
    { numRuns: 500 },
  );
});

test('every change names the stream it changed, and get() returns a copy', () => {
  const registry = new NodeRegistry();
  const seen: number[] = [];
  registry.onChange((streamId) => seen.push(streamId));
  registry.connect({ streamId: 7, nodeId: 'a', group: 'g', protocol: 'sotw', connectedAt: new Date(0).toISOString() });
  registry.recordAck(7, TYPE.cluster, 'v1');
  registry.recordSynced(7, 3);
  registry.recordSlow(7, { pendingSince: new Date(0).toISOString(), pendingTypes: [TYPE.route], writeBacklog: 0 });
  registry.recordSlow(7, { pendingSince: new Date(0).toISOString(), pendingTypes: [TYPE.route], writeBacklog: 0 }); // same mark: no change
  registry.disconnect(7);
  assert.deepEqual(seen, [7, 7, 7, 7, 7]);

  registry.connect({ streamId: 8, nodeId: 'b', group: 'g', protocol: 'sotw', connectedAt: new Date(0).toISOString() });
  registry.recordSlow(8, { pendingSince: new Date(5).toISOString(), pendingTypes: [TYPE.listener], writeBacklog: 2 });
  const copy = registry.get(8)!;
  copy.slow!.pendingTypes.push('x');
  assert.deepEqual(registry.get(8)!.slow, { pendingSince: new Date(5).toISOString(), pendingTypes: [TYPE.listener], writeBacklog: 2 });
  registry.recordSlow(8, undefined);
  assert.equal(registry.get(8)!.slow, undefined);
  assert.equal(registry.get(9), undefined);
});

test('a node that never ACKed holds nobody up; once it ACKs it counts until it syncs', () => {
  const registry = new NodeRegistry();
  registry.connect({ streamId: 1, nodeId: 'quiet', group: 'g', protocol: 'sotw', connectedAt: new Date(0).toISOString() });
  assert.equal(registry.countedBehind(5), 0);
  registry.recordAck(1, TYPE.cluster, 'v1');
  assert.equal(registry.countedBehind(5), 1);
  registry.recordSynced(1, 5);
  assert.equal(registry.countedBehind(5), 0);
  assert.equal(registry.countedBehind(6), 1);
});
