// A commit made through this process reaches the local publisher from memory:
// no change feed, no read back from Postgres. The snapshot it hands over is
// frozen (shared with the publisher, the request-path services and the next
// commit), and objects a commit did not touch stay the same objects.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Publisher } from '../../control-plane/src/publisher.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let prisma: PrismaClient;

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
});

after(async () => {
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

const upstream = { name: 'web', endpoints: [{ host: '127.0.0.1', port: 8080 }] };
const route = (name: string) => ({ name, match: { path: { prefix: `/${name}` } }, action: { upstream: 'web' } });

test('a local commit is published from memory, frozen, sharing the objects it did not touch', async () => {
  const store = new ConfigStore(prisma);
  const cache = new SnapshotCache();
  let loads = 0;
  const publisher = new Publisher({
    // Counted: the handoff must not need it.
    loadState: () => {
      loads += 1;
      return store.loadState();
    },
    cache,
    translateOptions: { listenerPort: 10_000, listenerAddress: '127.0.0.1' },
    log: { info() {}, warn() {} },
  });
  store.onCommitted((revision, snapshot) => publisher.offer({ state: { revision, ...snapshot.config }, keys: snapshot.credential_keys }));

  const first = await store.commit('t', 'seed', (d) => {
    d.create('upstreams', upstream as never);
    d.create('routes', route('a') as never);
    d.create('routes', route('b') as never);
  });
  assert.equal(publisher.published, first.revision, 'published as the commit returned, without a feed');
  assert.equal(cache.current(SnapshotCache.DEFAULT_GROUP)?.revision, first.revision);

  const { state: before } = await store.loadState();
  assert.ok(Object.isFrozen(before.routes) && Object.isFrozen(before.routes[0]) && Object.isFrozen(before.routes[0]!.match), 'deep-frozen');
  assert.throws(() => {
    (before.routes[0] as { name: string }).name = 'changed';
  }, TypeError);

  const second = await store.commit('t', 'one more', (d) => d.create('routes', route('c') as never));
  assert.equal(publisher.published, second.revision);
  const { state: afterCommit } = await store.loadState();
  const byName = (s: typeof before, name: string) => s.routes.find((r) => r.name === name);
  assert.equal(byName(afterCommit, 'a'), byName(before, 'a'), 'an untouched route is the same object in the next revision');
  assert.equal(byName(afterCommit, 'b'), byName(before, 'b'));
  assert.equal(loads, 0, 'nothing was read back from Postgres to publish');

  // A stale load (the feed catching up late) cannot take the fleet back.
  publisher.offer({ state: { ...before, revision: first.revision }, keys: {} });
  assert.equal(cache.current(SnapshotCache.DEFAULT_GROUP)?.revision, second.revision);
});

test('a listener that throws never turns a committed write into an error', async () => {
  const store = new ConfigStore(prisma);
  const seen: number[] = [];
  store.onCommitted(() => {
    throw new Error('listener broke');
  });
  store.onCommitted((revision) => seen.push(revision));
  const result = await store.commit('t', 'after a broken listener', (d) => d.create('routes', route('d') as never));
  assert.equal(result.changed, true);
  assert.deepEqual(seen, [result.revision], 'the other listeners still hear of it');
  assert.equal(await store.currentRevision(), result.revision);
});

test('a replica that catches up through another replica\'s change sets judges its next write with their references', async () => {
  const a = new ConfigStore(prisma);
  const b = new ConfigStore(prisma);
  const u = { name: 'shared-u', endpoints: [{ host: '127.0.0.1', port: 8080 }] };
  const r = { name: 'shared-r', match: { path: { prefix: '/shared' } }, action: { upstream: 'shared-u' } };
  await b.commit('b', 'b has a head and an index', (d) => d.create('upstreams', u as never));
  await a.commit('a', 'a route on it', (d) => d.create('routes', r as never));
  // b replays a's change set; its index must now know the route points at the upstream.
  await assert.rejects(
    b.commit('b', 'delete the upstream', (d) => d.delete('upstreams', 'shared-u')),
    (err: Error & { code?: string; issues?: Array<{ message: string }> }) => err.code === 'invalid' && err.issues!.some((i) => /unknown upstream 'shared-u'/.test(i.message)),
  );
  await a.commit('a', 'the route goes', (d) => d.delete('routes', 'shared-r'));
  // ...and that the reference went with it.
  const deleted = await b.commit('b', 'delete the upstream', (d) => d.delete('upstreams', 'shared-u'));
  assert.equal(deleted.changed, true);
});
