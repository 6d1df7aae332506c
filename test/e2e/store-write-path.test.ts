// The write path's round trips (issue 12: a one-route write's latency is mostly
// Postgres round trips). A warm store commits a one-object change in one
// statement, with no transaction around it: it takes the write lock, checks
// that the head the store cached is still the newest, and writes the revision,
// its audit rows and the object rows. A replica whose cache is stale (another
// replica wrote, even while it waited for the lock) writes nothing on that
// attempt and commits from the fresh head instead.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { UpstreamSchema } from '../../control-plane/src/model/index.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
/** Every statement the client sends, in order (Prisma's query events). */
const statements: string[] = [];
let prisma: PrismaClient;
let other: PrismaClient;

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  const logging = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url }), log: [{ emit: 'event', level: 'query' }] });
  logging.$on('query', (event) => statements.push(event.query));
  prisma = logging as unknown as PrismaClient;
  other = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url }) });
});

after(async () => {
  await prisma?.$disconnect();
  await other?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

const upstream = (name: string, port = 8080) => ({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, to: string) => ({ name, match: { path: { prefix: `/${name}` } }, action: { upstream: to } });

const actionOf = (spec: unknown): unknown => (spec as { action?: unknown } | undefined)?.action;

async function count(table: 'revisions' | 'audit_log' | 'routes'): Promise<number> {
  const [row] = await other.$queryRawUnsafe<Array<{ n: bigint }>>(`SELECT count(*) AS n FROM ${table}`);
  return Number(row!.n);
}

test('a warm store commits a one-route write in one statement (no BEGIN, no COMMIT), and writes its revision, audit row and route row', async () => {
  const store = new ConfigStore(prisma);
  await store.commit('t', 'seed', (d) => d.create('upstreams', upstream('web') as never));
  statements.length = 0;
  const result = await store.commit('t', 'one route', (d) => d.create('routes', route('home', 'web') as never));
  // Prisma reports every statement it sends but a transaction's BEGIN (COMMIT shows): one statement, no transaction.
  assert.deepEqual(statements.map((q) => q.trim().split(/\s+/).slice(0, 3).join(' ')), ['WITH lock AS']);
  assert.equal(result.changed, true);
  const [entry, ...more] = await store.revisionDiff(result.revision);
  assert.deepEqual([entry?.op, entry?.kind, entry?.name, entry?.before, more.length], ['create', 'routes', 'home', undefined, 0]);
  const stored = await store.get('routes', 'home');
  assert.deepEqual(stored?.spec, entry?.after);
  assert.deepEqual(actionOf(stored?.spec), { upstream: 'web' });
  assert.equal(stored?.version, 1);
  assert.equal(await store.currentRevision(), result.revision);
});

test('updates and deletes of plain objects are written by the same statement, audit rows in diff order', async () => {
  const store = new ConfigStore(prisma);
  await store.commit('t', 'two more', (d) => {
    d.create('upstreams', upstream('api') as never);
    d.create('routes', route('api', 'api') as never);
  });
  const result = await store.commit('t', 'move and drop', (d) => {
    d.replace('upstreams', 'api', upstream('api', 9090) as never);
    d.delete('routes', 'home');
  });
  assert.deepEqual(
    (await store.revisionDiff(result.revision)).map((e) => [e.op, e.kind, e.name]),
    [['update', 'upstreams', 'api'], ['delete', 'routes', 'home']],
  );
  assert.equal((await store.get('upstreams', 'api'))?.version, 2);
  assert.deepEqual((await store.get('upstreams', 'api'))?.spec, (await store.revisionSnapshot(result.revision))?.config.upstreams.find((u) => u.name === 'api'));
  assert.deepEqual(((await store.get('upstreams', 'api'))?.spec as { endpoints: Array<{ port: number }> }).endpoints.map((e) => e.port), [9090]);
  assert.equal(await store.get('routes', 'home'), undefined);
});

test('a replica with a stale cached head judges its write on the fresh head, and its stale attempt writes nothing', async () => {
  const a = new ConfigStore(other);
  const b = new ConfigStore(prisma);
  await b.commit('b', 'b caches a head', (d) => d.create('upstreams', upstream('stale-1') as never));
  await a.commit('a', 'a adds a route b has not seen', (d) => d.create('routes', route('stale-r', 'stale-1') as never));
  const before = { revisions: await count('revisions'), audit: await count('audit_log'), routes: await count('routes') };

  // On b's stale config the route does not exist: a replace would be a 404, a create would succeed.
  const replaced = await b.commit('b', 'replace the route a made', (d) => d.replace('routes', 'stale-r', route('stale-r', 'web') as never));
  assert.equal(replaced.changed, true);
  assert.deepEqual(actionOf((await b.get('routes', 'stale-r'))?.spec), { upstream: 'web' });
  assert.deepEqual({ revisions: await count('revisions'), audit: await count('audit_log'), routes: await count('routes') }, { revisions: before.revisions + 1, audit: before.audit + 1, routes: before.routes });

  await a.commit('a', 'a adds another', (d) => d.create('routes', route('stale-s', 'web') as never));
  await assert.rejects(
    b.commit('b', 'create what a made', (d) => d.create('routes', route('stale-s', 'web') as never)),
    (err: Error & { code?: string }) => err.code === 'conflict',
  );
  await a.commit('a', 'a moves it', (d) => d.replace('routes', 'stale-s', route('stale-s', 'api') as never));
  // A dry run and a no-op on a stale head would answer for the wrong config.
  const dry = await b.commit('b', 'dry', (d) => d.replace('routes', 'stale-s', route('stale-s', 'api') as never), { dryRun: true });
  assert.deepEqual(dry.diff, []);
  assert.equal(dry.revision, await a.currentRevision());
});

test('a revision committed while a one-statement commit waits for the write lock is seen: that attempt writes nothing and the commit lands on top', async () => {
  const b = new ConfigStore(prisma);
  await b.commit('b', 'b caches a head', (d) => d.create('upstreams', upstream('race-1') as never));
  const revisionsBefore = await count('revisions');
  // Another writer, by hand: holds the write lock, draws the next revision id and commits a change set b has not seen.
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  try {
    await writer.query('BEGIN');
    await writer.query('SELECT pg_advisory_xact_lock(7300115105099)'); // config-store.ts WRITE_LOCK
    const theirs = UpstreamSchema.parse(upstream('race-theirs'));
    const changes = { put: { upstreams: [theirs] }, deleted: {}, keys_put: {}, keys_deleted: [] };
    const [row] = (await writer.query<{ id: string }>(`INSERT INTO revisions (author, message, snapshot, changes) VALUES ('other', 'theirs', NULL, $1::jsonb) RETURNING id`, [JSON.stringify(changes)])).rows;
    await writer.query(`INSERT INTO upstreams (name, spec) VALUES ('race-theirs', $1::jsonb)`, [JSON.stringify(theirs)]);

    const mine = b.commit('b', 'mine', (d) => d.create('routes', route('race-r', 'race-1') as never));
    // Wait (no clock) until b's statement is queued behind the lock, so its snapshot predates the other commit.
    for (;;) {
      const [waiting] = (await writer.query<{ n: string }>(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows;
      if (Number(waiting!.n) > 0) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await writer.query('COMMIT');
    const result = await mine;
    assert.equal(result.revision, Number(row!.id) + 1);
    assert.equal(await count('revisions'), revisionsBefore + 2);
    // b's new head holds the other writer's upstream: it committed on top of it, not beside it.
    const { state } = await b.loadState();
    assert.deepEqual(state.upstreams.map((u) => u.name).filter((n) => n.startsWith('race-')), ['race-1', 'race-theirs']);
    assert.deepEqual(state.routes.map((r) => r.name).filter((n) => n.startsWith('race-')), ['race-r']);
    assert.deepEqual((await new ConfigStore(other).loadState()).state, state);
  } finally {
    await writer.end();
  }
});

test('writes that need a transaction still get one: If-Match and credentials', async () => {
  const store = new ConfigStore(prisma);
  await store.commit('t', 'seed', (d) => d.create('upstreams', upstream('tx-u') as never));
  const version = (await store.get('upstreams', 'tx-u'))!.version;
  statements.length = 0;
  await store.commit('t', 'if-match', (d) => d.replace('upstreams', 'tx-u', upstream('tx-u', 9091) as never, version));
  assert.ok(statements.includes('COMMIT'), 'an If-Match write runs in a transaction');
  await assert.rejects(
    store.commit('t', 'stale if-match', (d) => d.replace('upstreams', 'tx-u', upstream('tx-u', 9092) as never, version)),
    (err: Error & { code?: string }) => err.code === 'precondition_failed',
  );
  statements.length = 0;
  await store.commit('t', 'consumer', (d) => d.create('consumers', { name: 'tx-c', tags: [], metadata: {} } as never));
  assert.ok(statements.includes('COMMIT'), 'a consumer write runs in a transaction');
  assert.equal((await store.get('consumers', 'tx-c'))?.name, 'tx-c');
});

test('a commit that deletes, replaces and creates in one list keeps the untouched objects (the same objects) and canonicalises the new ones', async () => {
  const store = new ConfigStore(prisma);
  await store.commit('t', 'list', (d) => {
    d.create('upstreams', upstream('mix') as never);
    for (const name of ['mix-a', 'mix-b', 'mix-c', 'mix-d', 'mix-e']) d.create('routes', route(name, 'mix') as never);
  });
  const before = (await store.loadState()).state.routes.filter((r) => r.name.startsWith('mix-'));
  await store.commit('t', 'mixed', (d) => {
    d.delete('routes', 'mix-b');
    d.replace('routes', 'mix-d', { ...route('mix-d', 'mix'), hosts: ['d.example'] } as never);
    d.create('routes', route('mix-aa', 'mix') as never);
  });
  const after = (await store.loadState()).state.routes.filter((r) => r.name.startsWith('mix-'));
  assert.deepEqual(after.map((r) => r.name), ['mix-a', 'mix-aa', 'mix-c', 'mix-d', 'mix-e']);
  const byName = (list: typeof before, name: string) => list.find((r) => r.name === name);
  for (const name of ['mix-a', 'mix-c', 'mix-e']) assert.equal(byName(after, name), byName(before, name), `${name} is the same object`);
  assert.deepEqual(byName(after, 'mix-d')?.hosts, ['d.example']);
  assert.equal(byName(after, 'mix-aa')?.priority, 0, 'defaults filled in');
  assert.ok(Object.isFrozen(byName(after, 'mix-aa')) && Object.isFrozen(byName(after, 'mix-d')));
});
