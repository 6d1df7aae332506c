// A commit made through this process reaches the local publisher from memory:
// no change feed, no read back from Postgres. The snapshot it hands over is
// frozen (shared with the publisher, the request-path services and the next
// commit), and objects a commit did not touch stay the same objects.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Publisher } from '../../control-plane/src/publisher.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient as GeneratedClient, createPrisma, poolOf, rawRows, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { remoteNodesBehind } from '../../control-plane/src/store/fleet-status.ts';
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

/** A publisher whose translations are counted, fed by `store` the way main.ts wires it. */
function countingPublisher(store: ConfigStore, cache: SnapshotCache): { publisher: Publisher; translations: () => number } {
  let translations = 0;
  const publisher = new Publisher({
    loadState: () => store.loadState(),
    cache,
    translateOptions: { listenerPort: 10_000, listenerAddress: '127.0.0.1' },
    log: { info() {}, warn() {} },
    metrics: { translated: () => (translations += 1), published() {} },
  });
  store.onPrepared((config) => publisher.prepare(config));
  store.onCommitted((revision, snapshot) => publisher.offer({ state: { revision, ...snapshot.config }, keys: snapshot.credential_keys }));
  return { publisher, translations: () => translations };
}

/** The resources in the cache's newest snapshot, as (type, name, version) triples. */
function publishedResources(cache: SnapshotCache): string[] {
  const snapshot = cache.current(SnapshotCache.DEFAULT_GROUP)!;
  return [...snapshot.types.values()].flatMap((set) => [...set.values()].map((r) => `${r.typeUrl} ${r.name} ${r.version}`)).sort();
}

/** What a fresh pipeline (no cache, nothing prepared) publishes for the store's newest revision. */
async function freshlyPublished(store: ConfigStore): Promise<string[]> {
  const cache = new SnapshotCache();
  const publisher = new Publisher({ loadState: () => store.loadState(), cache, translateOptions: { listenerPort: 10_000, listenerAddress: '127.0.0.1' }, log: { info() {}, warn() {} } });
  await publisher.offer(await store.loadState());
  return publishedResources(cache);
}

test('a local commit is translated once, while its statement runs, and published as a fresh translation would be', async () => {
  const store = new ConfigStore(prisma);
  const cache = new SnapshotCache();
  const { publisher, translations } = countingPublisher(store, cache);
  await store.commit('t', 'seed', (d) => {
    d.create('upstreams', { name: 'prep-u', endpoints: [{ host: '127.0.0.1', port: 8080 }] } as never);
    d.create('routes', { name: 'prep-a', match: { path: { prefix: '/prep-a' } }, action: { upstream: 'prep-u' } } as never);
  });
  for (const name of ['prep-b', 'prep-c', 'prep-d']) {
    const result = await store.commit('t', name, (d) => d.create('routes', { name, match: { path: { prefix: `/${name}` } }, action: { upstream: 'prep-u' } } as never));
    assert.equal(publisher.published, result.revision, 'published as the commit returned');
  }
  assert.equal(translations(), 4, 'each commit translated once: the prepared translation was used, not repeated');
  assert.deepEqual(publishedResources(cache), await freshlyPublished(store));
  // Nothing prepared: a dry run and a no-op commit nothing and translate nothing.
  await store.commit('t', 'dry', (d) => d.create('routes', { name: 'prep-e', match: { path: { prefix: '/prep-e' } }, action: { upstream: 'prep-u' } } as never), { dryRun: true });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(translations(), 4);
  publisher.stop();
});

test('a config prepared for a commit that found the head moved is never published', async () => {
  const store = new ConfigStore(prisma);
  const other = new ConfigStore(prisma); // another replica on the same database
  const cache = new SnapshotCache();
  const { publisher } = countingPublisher(store, cache);
  await store.commit('t', 'seed', (d) => d.create('upstreams', { name: 'moved-u', endpoints: [{ host: '127.0.0.1', port: 8080 }] } as never));
  await other.commit('o', 'behind this store\'s back', (d) => d.create('routes', { name: 'moved-x', match: { path: { prefix: '/moved-x' } }, action: { upstream: 'moved-u' } } as never));
  // The first attempt plans on the stale head (no moved-x), prepares that config, and finds the head moved.
  const result = await store.commit('t', 'on a stale head', (d) => d.create('routes', { name: 'moved-y', match: { path: { prefix: '/moved-y' } }, action: { upstream: 'moved-u' } } as never));
  assert.equal(publisher.published, result.revision);
  const published = publishedResources(cache);
  assert.deepEqual(published, await freshlyPublished(store), 'the committed config (with moved-x), not the prepared stale one');
  publisher.stop();
});

test('the publisher uses a prepared translation only for that very config, and only once it is offered', async () => {
  const store = new ConfigStore(prisma);
  await store.commit('t', 'seed', (d) => {
    d.create('upstreams', { name: 'only-u', endpoints: [{ host: '127.0.0.1', port: 8080 }] } as never);
    d.create('routes', { name: 'only-a', match: { path: { prefix: '/only-a' } }, action: { upstream: 'only-u' } } as never);
  });
  const { state } = await store.loadState();
  const cache = new SnapshotCache();
  const { publisher, translations } = countingPublisher(new ConfigStore(prisma), cache);
  const { revision: _revision, ...config } = state;
  publisher.prepare(config);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(translations(), 1, 'translated on the next turn of the event loop');
  assert.equal(cache.current(SnapshotCache.DEFAULT_GROUP), undefined, 'nothing published before the offer');
  await publisher.offer({ state: { ...config, revision: 7 }, keys: {} });
  assert.equal(translations(), 1, 'the prepared translation was used');
  assert.equal(cache.current(SnapshotCache.DEFAULT_GROUP)?.revision, 7);
  // Equal content in other arrays (a State read back) is not the prepared config: translated afresh.
  publisher.prepare(config);
  await publisher.offer({ state: { ...structuredClone(config), revision: 8 }, keys: {} });
  assert.equal(translations(), 2);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(translations(), 3, 'a preparation never offered is wasted work, nothing more');
  assert.equal(cache.current(SnapshotCache.DEFAULT_GROUP)?.revision, 8);
  publisher.stop();
});

test('the hot raw statements go through the pool under the client, with the results Prisma gives', async () => {
  const viaPool = new ConfigStore(prisma);
  assert.ok(poolOf(prisma), 'createPrisma keeps its pool at hand');
  // A client with no pool of ours: every statement through Prisma (the fallback).
  const prismaOnly = new GeneratedClient({ adapter: new PrismaPg({ connectionString: db.url }) }) as PrismaClient;
  try {
    assert.equal(poolOf(prismaOnly), undefined);
    const viaPrisma = new ConfigStore(prismaOnly);
    await viaPool.commit('t', 'seed', (d) => d.create('upstreams', { name: 'pool-u', endpoints: [{ host: '127.0.0.1', port: 8080 }] } as never));
    const one = await viaPool.commit('t', 'alone, through the pool', (d) => d.create('routes', { name: 'pool-a', match: { path: { prefix: '/pool-a' } }, action: { upstream: 'pool-u' } } as never));
    assert.equal(typeof one.revision, 'number');
    assert.equal(one.revision, await viaPool.currentRevision());
    const two = await viaPrisma.commit('t', 'alone, through Prisma', (d) => d.create('routes', { name: 'pool-b', match: { path: { prefix: '/pool-b' } }, action: { upstream: 'pool-u' } } as never));
    assert.equal(two.revision, one.revision + 1);
    for (const name of ['pool-a', 'pool-b']) {
      const [a, b] = [await viaPool.get('routes', name), await viaPrisma.get('routes', name)];
      assert.ok(a && a.createdAt instanceof Date);
      assert.deepEqual(a, b, 'the same object, field for field, either way');
    }
    assert.equal(await remoteNodesBehind(prisma, 'nobody', one.revision, []), await remoteNodesBehind(prismaOnly, 'nobody', one.revision, []));
  } finally {
    await prismaOnly.$disconnect();
  }
  // $disconnect ends the pool with the client: nothing is sent through an ended pool.
  const short = createPrisma(db.url);
  await short.$queryRawUnsafe('SELECT 1');
  await short.$disconnect();
  assert.equal(poolOf(short), undefined);
});

test('the raw statements are prepared once per connection, and still answer after a migration changes what one returns', async () => {
  const pool = poolOf(prisma)!;
  await prisma.$executeRawUnsafe('CREATE TABLE prepared_probe (id int PRIMARY KEY, v int NOT NULL)');
  await prisma.$executeRawUnsafe('INSERT INTO prepared_probe VALUES (1, 7)');
  // Whichever pooled connection answers, it reports the statements prepared on itself.
  const sql = 'SELECT v, (SELECT count(*)::int FROM pg_prepared_statements WHERE statement = $2) AS prepared FROM prepared_probe WHERE id = $1';
  for (let i = 0; i < 3; i++) {
    const [row] = await rawRows<{ v: number; prepared: number }>(prisma, sql, 1, sql);
    assert.deepEqual(row, { v: 7, prepared: 1 }, 'prepared on the connection that ran it, and the same row as ever');
  }
  // Another replica's migration changes the column's type: every connection that prepared the statement
  // now holds a plan whose result type is stale (Postgres refuses to run it), and the call still answers.
  await prisma.$executeRawUnsafe("ALTER TABLE prepared_probe ALTER COLUMN v TYPE text USING 'seven'");
  for (let i = 0; i < pool.totalCount + 1; i++) {
    const [row] = await rawRows<{ v: string }>(prisma, sql, 1, sql);
    assert.equal(row?.v, 'seven');
  }
  await prisma.$executeRawUnsafe('DROP TABLE prepared_probe');
});
