// The config store on a real Postgres: transactional writes, revisions, audit,
// validation that changes nothing, optimistic concurrency, and the change feed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteSchema, UpstreamSchema, type Route, type Upstream } from '../../control-plane/src/model/index.ts';
import { generateApiKey, hashApiKey } from '../../control-plane/src/store/api-keys.ts';
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

// The authz service will be handed the newest State with its credential keys
// (ConfigStore.loadState().keys) and look a presented key up by its HMAC; a key
// is usable exactly when its hash is among those.
test('a deleted API key stays revoked after a rollback to a revision that held it; a new key can be issued', async () => {
  const secret = 'x'.repeat(40);
  const activeHashes = async () => new Set(Object.values((await store.loadState()).keys).map((k) => k.hash));
  const rollback = async (n: number) => {
    const snapshot = await store.revisionSnapshot(n);
    assert.ok(snapshot);
    return store.commit('alice', `rollback to revision ${n}`, (d) => d.replaceAll(snapshot.config, snapshot.credential_keys));
  };
  const first = generateApiKey(secret);
  await store.commit('alice', 'owner', (d) => d.create('consumers', { name: 'key-owner', tags: [], metadata: {} }));
  const withKey = await store.commit('alice', 'key', (d) =>
    d.create('credentials', { name: 'key-1', consumer: 'key-owner', kind: 'api_key' }, { prefix: first.prefix, hash: first.hash }),
  );
  assert.ok((await activeHashes()).has(hashApiKey(secret, first.key)));

  await store.commit('alice', 'revoke', (d) => d.delete('credentials', 'key-1'));
  assert.ok(!(await activeHashes()).has(hashApiKey(secret, first.key)));

  const rolled = await rollback(withKey.revision);
  assert.equal(rolled.changed, true);
  assert.ok(!(await activeHashes()).has(hashApiKey(secret, first.key)), 'the deleted key must not work again');
  const { state, keys } = await store.loadState();
  assert.ok(state.credentials.some((c) => c.name === 'key-1'), 'the credential itself is restored');
  assert.equal(keys['key-1'], undefined, 'but without its revoked key');
  assert.deepEqual(rolled.keysWithheld, ['key-1']);
  assert.equal((await prisma.credential.findUnique({ where: { name: 'key-1' } }))?.keyHash, null);
  const [summary] = await store.listRevisions(1);
  assert.match(summary?.message ?? '', /API keys not restored, revoked for good: key-1/);

  // A new key makes the restored credential usable; replacing it revokes the one before.
  const second = generateApiKey(secret);
  const issued = await store.commit('alice', 'new key', (d) => d.issueKey('key-1', second));
  assert.equal(issued.changed, true);
  assert.ok((await activeHashes()).has(hashApiKey(secret, second.key)));
  assert.equal((await prisma.credential.findUnique({ where: { name: 'key-1' } }))?.keyHash, second.hash);
  const third = generateApiKey(secret);
  await store.commit('alice', 'rotate', (d) => d.issueKey('key-1', third));
  const back = await rollback(issued.revision);
  assert.deepEqual(back.keysWithheld, ['key-1']);
  const active = await activeHashes();
  assert.ok(!active.has(second.hash) && active.has(third.hash), 'a rollback keeps the live key and never revives the replaced one');

  // Deleting the consumer revokes its credentials' keys too.
  await store.commit('alice', 'drop owner', (d) => d.delete('consumers', 'key-owner'));
  const again = await rollback(issued.revision + 1);
  assert.deepEqual(again.keysWithheld, ['key-1']);
  assert.deepEqual(await activeHashes(), new Set());
});
