// Revision history on a real Postgres: revisions stored as change sets with
// checkpoints, rebuilt exactly; retention that prunes in the background without
// blocking writers or breaking reconstruction; rollback past retention is 410.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import { buildAdminApp } from '../../control-plane/src/admin/app.ts';
import { createAdminToken } from '../../control-plane/src/admin/tokens.ts';
import { RouteSchema, UpstreamSchema, type Kind, type Route, type Upstream } from '../../control-plane/src/model/index.ts';
import { ConfigStore, StoreError, type CredentialKey, type Draft, type RevisionHistorySettings } from '../../control-plane/src/store/config-store.ts';
import { defaultMigrationsDir, migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await stopTestPostgres();
});

async function freshStore(history: Partial<RevisionHistorySettings>): Promise<{ db: TestDatabase; prisma: PrismaClient; store: ConfigStore }> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  await migrate(db.url);
  const prisma = createPrisma(db.url);
  cleanups.push(() => prisma.$disconnect());
  return { db, prisma, store: new ConfigStore(prisma, history) };
}

/** No background pruning unless a test asks for it. */
const KEEP_ALL: Partial<RevisionHistorySettings> = { retainRevisions: 0, retainMs: 0, auditRetainMs: 0, pruneEveryCommits: Number.MAX_SAFE_INTEGER };

const upstream = (name: string, port: number): Upstream => UpstreamSchema.parse({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, target: string, prefix: string): Route => RouteSchema.parse({ name, match: { path: { prefix } }, action: { upstream: target } });

/** What loadState gives, as the exact text a reconstruction must reproduce. */
async function stateText(store: ConfigStore): Promise<{ revision: number; text: string }> {
  const { state, keys } = await store.loadState();
  return { revision: state.revision, text: JSON.stringify({ state, keys }) };
}

async function rebuiltText(store: ConfigStore, revision: number): Promise<string | undefined> {
  const snapshot = await store.revisionSnapshot(revision);
  return snapshot && JSON.stringify({ state: { revision, ...snapshot.config }, keys: snapshot.credential_keys });
}

/** Records loadState's text per revision; the same revision must always read the same. */
class Recorder {
  readonly seen = new Map<number, string>();
  async record(store: ConfigStore): Promise<void> {
    const { revision, text } = await stateText(store);
    const earlier = this.seen.get(revision);
    if (earlier !== undefined) assert.equal(text, earlier, `revision ${revision} read differently twice`);
    this.seen.set(revision, text);
  }

  /** Every recorded revision from `from` on, rebuilt by a store with a cold cache, equals what was recorded. */
  async verify(prisma: PrismaClient, from = 0): Promise<number> {
    const cold = new ConfigStore(prisma, KEEP_ALL);
    let checked = 0;
    for (const [revision, text] of [...this.seen].sort((a, b) => a[0] - b[0])) {
      if (revision < from || revision === 0) continue;
      assert.equal(await rebuiltText(cold, revision), text, `revision ${revision} rebuilt differently`);
      checked += 1;
    }
    return checked;
  }
}

// ---- randomized writes -------------------------------------------------------

type Op =
  | { t: 'upstream'; i: number; port: number }
  | { t: 'route'; i: number; u: number; p: number }
  | { t: 'delete'; kind: Kind; i: number }
  | { t: 'consumer'; i: number; tag: number }
  | { t: 'credential'; i: number; c: number }
  | { t: 'rollback'; back: number }
  | { t: 'batch'; n: number; u: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('upstream' as const), i: fc.nat(3), port: fc.integer({ min: 8000, max: 8004 }) }),
  fc.record({ t: fc.constant('route' as const), i: fc.nat(7), u: fc.nat(3), p: fc.nat(3) }),
  fc.record({ t: fc.constant('delete' as const), kind: fc.constantFrom<Kind>('upstreams', 'routes', 'consumers', 'credentials'), i: fc.nat(7) }),
  fc.record({ t: fc.constant('consumer' as const), i: fc.nat(2), tag: fc.nat(2) }),
  fc.record({ t: fc.constant('credential' as const), i: fc.nat(3), c: fc.nat(2) }),
  fc.record({ t: fc.constant('rollback' as const), back: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ t: fc.constant('batch' as const), n: fc.integer({ min: 2, max: 12 }), u: fc.nat(3) }),
);

const NAMES: Record<Kind, string> = { upstreams: 'u', routes: 'r', consumers: 'c', credentials: 'k', jwt_providers: 'j', rate_limit_policies: 'p' };
let keySerial = 0;
const nextKey = (): CredentialKey => ((keySerial += 1), { prefix: `pre${keySerial}`, hash: `hash-${keySerial}` });

async function planFor(store: ConfigStore, op: Op): Promise<((d: Draft) => void) | undefined> {
  switch (op.t) {
    case 'upstream':
      return (d) => upsert(d, 'upstreams', upstream(`u${op.i}`, op.port));
    case 'route':
      return (d) => upsert(d, 'routes', route(`r${op.i}`, `u${op.u}`, `/r${op.i}/${op.p}`));
    case 'delete':
      return (d) => d.delete(op.kind, `${NAMES[op.kind]}${op.i}`);
    case 'consumer':
      return (d) => upsert(d, 'consumers', { name: `c${op.i}`, tags: [`t${op.tag}`], metadata: {} });
    case 'credential':
      return (d) => {
        const name = `k${op.i}`;
        if (d.get('credentials', name)) d.issueKey(name, nextKey());
        else d.create('credentials', { name, consumer: `c${op.c}`, kind: 'api_key' }, nextKey());
      };
    case 'rollback': {
      const target = (await store.currentRevision()) - op.back;
      const snapshot = target > 0 ? await store.revisionSnapshot(target) : undefined;
      return snapshot && ((d) => d.replaceAll(snapshot.config, snapshot.credential_keys));
    }
    case 'batch':
      // Many objects in one revision: change sets bigger than a checkpoint interval's byte budget.
      return (d) => {
        upsert(d, 'upstreams', upstream(`u${op.u}`, 8000));
        for (let i = 0; i < op.n; i += 1) upsert(d, 'routes', route(`b${i}`, `u${op.u}`, `/b${i}/${op.n}`));
      };
  }
}

function upsert(d: Draft, kind: Kind, spec: { name: string; [field: string]: unknown }): void {
  if (d.get(kind, spec.name)) d.replace(kind, spec.name, spec as never);
  else d.create(kind, spec as never);
}

test('any retained revision rebuilt from checkpoint + change sets equals what loadState returned at it (randomized)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 30, maxLength: 50 }), async (ops) => {
      // Small intervals so that a run crosses many checkpoints, by count and by bytes.
      const history = { ...KEEP_ALL, checkpointEveryRevisions: 4, checkpointEveryBytes: 3_000 };
      const { prisma, store } = await freshStore(history);
      const replica = new ConfigStore(prisma, history); // another replica: catches up by change sets
      const recorder = new Recorder();
      for (const [index, op] of ops.entries()) {
        const plan = await planFor(store, op);
        if (!plan) continue;
        try {
          await store.commit('prop', op.t, plan);
        } catch (err) {
          // Refused writes (a dangling reference, a missing object) are part of the sequence; nothing was stored.
          if (err instanceof StoreError && ['invalid', 'not_found', 'conflict'].includes(err.code)) continue;
          throw err;
        }
        await recorder.record(store);
        if (index % 3 === 0) assert.equal((await stateText(replica)).text, (await stateText(store)).text, 'the replica caught up exactly');
      }
      await recorder.verify(prisma);
      const [row] = await prisma.$queryRaw<Array<{ checkpoints: bigint }>>`SELECT count(*) AS checkpoints FROM revisions WHERE snapshot IS NOT NULL`;
      const checkpoints = row?.checkpoints ?? assert.fail('no count');
      const revisions = await store.currentRevision();
      assert.ok(revisions < 4 || Number(checkpoints) < revisions, 'not every revision is a checkpoint');
    }),
    { numRuns: 3 },
  );
});

// ---- storage ----------------------------------------------------------------

test('1,000 one-route writes to a 1,000-route config store less than 10x the config', { timeout: 120_000 }, async (t) => {
  const { prisma, store } = await freshStore({ ...KEEP_ALL, retainRevisions: 1_000 }); // default checkpoints: 100 revisions / 5 MiB
  const ROUTES = 1_000;
  const routeName = (i: number) => `route-${String(i).padStart(4, '0')}`;
  await store.commit('bench', 'load', (d) => {
    d.create('upstreams', upstream('web', 8080));
    for (let i = 0; i < ROUTES; i += 1) d.create('routes', route(routeName(i), 'web', `/svc/${i}/v0`));
  });
  const recorder = new Recorder();
  // Only the head is readable through loadState: sample the heads between batches (1 + 4k), across checkpoints.
  const sampled = new Set([1, 5, 101, 201, 333, 501, 701, 1_001]);
  await recorder.record(store);
  // One route changed per revision; a few commits in flight at once (they queue on the store's lock).
  const WRITES = 1_000;
  const BATCH = 4;
  for (let w = 0; w < WRITES; w += BATCH) {
    await Promise.all(
      Array.from({ length: BATCH }, (_, j) => store.commit('bench', 'one route', (d) => {
        const i = (w + j) % ROUTES;
        d.replace('routes', routeName(i), route(routeName(i), 'web', `/svc/${i}/v${w + j + 1}`));
      })),
    );
    if (sampled.has(await store.currentRevision())) await recorder.record(store);
  }
  assert.equal(await store.currentRevision(), WRITES + 1);
  const { state } = await store.loadState();
  const { revision: _revision, ...config } = state;
  const configBytes = Buffer.byteLength(JSON.stringify(config));
  const [size] = await prisma.$queryRaw<Array<{ bytes: bigint }>>`SELECT pg_total_relation_size('revisions') AS bytes`;
  const bytes = size?.bytes ?? assert.fail('no size');
  const ratio = Number(bytes) / configBytes;
  t.diagnostic(`config ${configBytes} bytes; revisions table ${Number(bytes)} bytes after ${WRITES + 1} revisions: ${ratio.toFixed(2)}x the config`);
  console.log(`store-revisions: revisions table = ${ratio.toFixed(2)}x the config (${Number(bytes)} / ${configBytes} bytes)`);
  assert.ok(ratio < 10, `revisions table is ${ratio.toFixed(1)}x the config`);
  assert.equal(await recorder.verify(prisma), sampled.size);
});

// ---- retention --------------------------------------------------------------

test('pruning keeps what retention asks (and the checkpoints it needs); rollback past it is 410, unknown is 404', async () => {
  const history = { checkpointEveryRevisions: 5, retainRevisions: 3, retainMs: 0, auditRetainMs: 86_400_000, pruneEveryCommits: Number.MAX_SAFE_INTEGER };
  const { prisma, store } = await freshStore(history);
  const recorder = new Recorder();
  for (let i = 0; i < 20; i += 1) {
    await store.commit('ops', `port ${i}`, (d) => upsert(d, 'upstreams', upstream('web', 8000 + i)));
    await recorder.record(store);
  }
  // Two audit rows made old enough for the audit retention (one day) to take.
  await prisma.$executeRaw`UPDATE audit_log SET at = now() - interval '2 days' WHERE revision IN (1, 2)`;
  const auditBefore = await prisma.auditLog.count();
  await store.checkpointsSettled(); // checkpoints are written after their commits

  const result = await store.prune();
  const head = await store.currentRevision();
  const oldest = await store.oldestRevision();
  assert.equal(head, 20);
  assert.ok(oldest > 1 && oldest <= head - 2, `kept from ${oldest}: at least the newest 3, less than everything`);
  assert.equal(result?.oldestKept, oldest);
  assert.equal(result?.audit, 2);
  // The audit log keeps its own retention: rows of pruned revisions stay while young enough.
  assert.equal(await prisma.auditLog.count(), auditBefore - 2);
  assert.ok((await prisma.auditLog.count({ where: { revision: { lt: BigInt(oldest), gt: 2n } } })) > 0);
  assert.ok((await recorder.verify(prisma, oldest)) >= 3);
  assert.equal(await store.revisionSnapshot(oldest - 1), undefined);

  const app = buildAdminApp({ store, prisma, registry: new NodeRegistry(), secret: 'revisions-test-secret-revisions-test' });
  cleanups.push(() => app.close());
  const token = (await createAdminToken(prisma, 'ops', 'write')).token;
  const call = (method: 'GET' | 'POST', url: string) => app.inject({ method, url, headers: { authorization: `Bearer ${token}` } });

  const gone = await call('POST', '/v1/revisions/1:rollback');
  assert.equal(gone.statusCode, 410, gone.body);
  assert.match(String(gone.headers['content-type']), /application\/problem\+json/);
  assert.equal(gone.json().status, 410);
  assert.deepEqual(gone.json().errors.map((e: { path: string }) => e.path), ['revision']);
  assert.equal((await call('GET', '/v1/revisions/1')).statusCode, 410);
  assert.equal((await call('POST', '/v1/revisions/999:rollback')).statusCode, 404);
  assert.equal(await store.currentRevision(), head, 'no partial restore: nothing was written');

  const back = await call('POST', `/v1/revisions/${oldest}:rollback`);
  assert.equal(back.statusCode, 200, back.body);
  const { state } = await store.loadState();
  const restored = JSON.parse(recorder.seen.get(oldest)!) as { state: object };
  assert.deepEqual({ ...state, revision: oldest }, restored.state);
});

test('pruning never waits for the writers lock, and pruning while two replicas write breaks no reconstruction', { timeout: 120_000 }, async () => {
  const history = { checkpointEveryRevisions: 3, retainRevisions: 4, retainMs: 0, auditRetainMs: 0, pruneEveryCommits: 1 };
  const { db, prisma, store } = await freshStore(history);
  const replica = new ConfigStore(prisma, history);
  await store.commit('w', 'seed', (d) => d.create('upstreams', upstream('web', 8000)));

  // A writer holding the store's lock (as a long commit would) does not hold up a prune.
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  cleanups.push(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(7300115105099)');
  const pruned = await store.prune();
  assert.ok(pruned, 'the prune finished while the writers lock was held');
  await holder.query('ROLLBACK');

  const recorder = new Recorder();
  let writing = true;
  let prunes = 0;
  const pruner = (async () => {
    while (writing) {
      await store.prune();
      prunes += 1;
    }
  })();
  const writer = async (who: ConfigStore, name: string) => {
    for (let i = 0; i < 20; i += 1) {
      const result = await who.commit(name, `${name} ${i}`, (d) => upsert(d, 'routes', route(`${name}-${i % 5}`, 'web', `/${name}/${i}`)));
      assert.equal(result.changed, true);
      await recorder.record(who);
    }
  };
  try {
    await Promise.all([writer(store, 'a'), writer(replica, 'b')]);
  } finally {
    writing = false;
    await pruner;
  }
  assert.ok(prunes > 0);
  await store.prune();
  const oldest = await store.oldestRevision();
  const head = await store.currentRevision();
  assert.equal(head, 41);
  assert.ok(head - oldest + 1 >= 4 && oldest > 1, `kept ${oldest}..${head}`);
  assert.ok((await recorder.verify(prisma, oldest)) >= 4);
  assert.equal((await stateText(replica)).text, (await stateText(store)).text);
});

// ---- migration ----------------------------------------------------------------

test('0004 keeps revisions written as full snapshots: they become checkpoints, and new writes build on them', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  // The schema as it was before change sets, with two revisions in the old format.
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-pre-0004-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const name of (await readdir(defaultMigrationsDir)).filter((n) => n.endsWith('.sql') && n < '0004')) {
    await cp(path.join(defaultMigrationsDir, name), path.join(dir, name));
  }
  await migrate(db.url, { dir });
  const oldConfig = (port: number) => ({
    config: { upstreams: [upstream('web', port)], routes: [route('home', 'web', '/')], consumers: [], credentials: [], jwt_providers: [], rate_limit_policies: [] },
    credential_keys: {},
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    for (const port of [8001, 8002]) await client.query('INSERT INTO revisions (author, snapshot) VALUES ($1, $2::jsonb)', ['legacy', JSON.stringify(oldConfig(port))]);
    await client.query(`INSERT INTO upstreams (name, spec) VALUES ('web', $1::jsonb)`, [JSON.stringify(upstream('web', 8002))]);
    await client.query(`INSERT INTO routes (name, spec) VALUES ('home', $1::jsonb)`, [JSON.stringify(route('home', 'web', '/'))]);
    await client.query(`INSERT INTO audit_log (revision, actor, action, kind, object_name) VALUES (1, 'legacy', 'create', 'upstreams', 'web')`);
  } finally {
    await client.end();
  }

  await migrate(db.url);
  const prisma = createPrisma(db.url);
  cleanups.push(() => prisma.$disconnect());
  const store = new ConfigStore(prisma, { ...KEEP_ALL, checkpointEveryRevisions: 3 });
  for (const [revision, port] of [[1, 8001], [2, 8002]] as const) {
    const snapshot = await store.revisionSnapshot(revision);
    assert.deepEqual(snapshot?.config.upstreams, [upstream('web', port)], `legacy revision ${revision} reads back`);
  }
  const recorder = new Recorder();
  for (let port = 8003; port < 8008; port += 1) {
    await store.commit('new', `port ${port}`, (d) => d.replace('upstreams', 'web', upstream('web', port)));
    await recorder.record(store);
  }
  assert.equal(await recorder.verify(prisma), 5);
  await store.checkpointsSettled(); // checkpoints are written after their commits
  const rows = await prisma.revision.findMany({ orderBy: { id: 'asc' }, select: { id: true, snapshot: true, changes: true } });
  assert.deepEqual(rows.map((r) => [Number(r.id), r.snapshot !== null, r.changes !== null]), [
    [1, true, false], [2, true, false], // legacy rows: checkpoints as they were
    [3, false, true], [4, false, true], [5, true, true], [6, false, true], [7, false, true],
  ]);
  // Pruning may now delete revisions the audit log still names.
  await new ConfigStore(prisma, { retainRevisions: 1, retainMs: 0 }).prune();
  assert.equal(await store.oldestRevision(), 5);
  assert.equal(await prisma.auditLog.count({ where: { revision: 1n } }), 1);
});
