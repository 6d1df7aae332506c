// The config store on a real Postgres: transactional writes, revisions, audit,
// validation that changes nothing, optimistic concurrency, and the change feed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteSchema, UpstreamSchema, type Route, type Upstream } from '../../control-plane/src/model/index.ts';
import { ChangeFeed } from '../../control-plane/src/store/change-feed.ts';
import { ConfigStore, StoreError } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let prisma: PrismaClient;
let store: ConfigStore;

const upstream = (name: string, port = 8080): Upstream => UpstreamSchema.parse({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, target: string, prefix = `/${name}`): Route =>
  RouteSchema.parse({ name, match: { path: { prefix } }, action: { upstream: target } });

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
  store = new ConfigStore(prisma);
});

after(async () => {
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

test('writes make revisions with audit rows; a no-op makes none', async () => {
  assert.equal(await store.currentRevision(), 0);
  const first = await store.commit('alice', 'add upstream', (d) => d.create('upstreams', upstream('web')));
  assert.deepEqual([first.revision, first.changed, first.diff.map((d) => d.op)], [1, true, ['create']]);
  const second = await store.commit('alice', 'add route', (d) => d.create('routes', route('home', 'web', '/')));
  assert.equal(second.revision, 2);
  const again = await store.commit('alice', 'same again', (d) => d.replace('routes', 'home', route('home', 'web', '/')));
  assert.deepEqual([again.revision, again.changed], [2, false]);
  const { state } = await store.loadState();
  assert.equal(state.revision, 2);
  assert.deepEqual(state.routes.map((r) => r.name), ['home']);
  const audit = await store.revisionDiff(2);
  assert.deepEqual(audit.map((a) => [a.op, a.kind, a.name]), [['create', 'routes', 'home']]);
  assert.equal((await store.get('routes', 'home'))?.version, 1);
});

test('an invalid change names the field and changes nothing', async () => {
  const before = await store.currentRevision();
  await assert.rejects(
    store.commit('alice', 'bad', (d) => d.create('routes', route('orphan', 'missing'))),
    (err: unknown) => err instanceof StoreError && err.code === 'invalid' && err.issues.some((i) => i.path.join('.').endsWith('action.upstream')),
  );
  assert.equal(await store.currentRevision(), before);
  assert.equal(await store.get('routes', 'orphan'), undefined);
});

test('a stale version is refused (optimistic concurrency)', async () => {
  const current = await store.get('upstreams', 'web');
  assert.ok(current);
  await store.commit('alice', 'move', (d) => d.replace('upstreams', 'web', upstream('web', 8081), current.version));
  await assert.rejects(
    store.commit('bob', 'move too', (d) => d.replace('upstreams', 'web', upstream('web', 8082), current.version)),
    (err: unknown) => err instanceof StoreError && err.code === 'precondition_failed',
  );
  assert.equal((await store.get('upstreams', 'web'))?.version, current.version + 1);
});

test('two concurrent writers both land, one revision each, in order', async () => {
  const before = await store.currentRevision();
  const [a, b] = await Promise.all([
    store.commit('a', 'a', (d) => d.create('upstreams', upstream('concurrent-a'))),
    store.commit('b', 'b', (d) => d.create('upstreams', upstream('concurrent-b'))),
  ]);
  assert.deepEqual([a.revision, b.revision].sort(), [before + 1, before + 2]);
  const { state } = await store.loadState();
  assert.ok(state.upstreams.some((u) => u.name === 'concurrent-a') && state.upstreams.some((u) => u.name === 'concurrent-b'));
});

test('the change feed reports committed revisions', async () => {
  const feed = new ChangeFeed(db.url);
  const seen: number[] = [];
  feed.on('revision', (r) => seen.push(r));
  await feed.start();
  try {
    const result = await store.commit('alice', 'feed', (d) => d.create('upstreams', upstream('fed')));
    const deadline = Date.now() + 5_000;
    while (!seen.includes(result.revision) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(seen.includes(result.revision), `feed saw ${seen}`);
  } finally {
    await feed.stop();
  }
});
