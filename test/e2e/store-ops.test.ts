// Operating the store against a real Postgres when connections fail: the change
// feed notices a killed backend and a half-open connection (heartbeat) and
// reconnects with jittered backoff, reporting the newest revision; the
// publisher retries a State load that failed instead of waiting for the feed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { UpstreamSchema } from '../../control-plane/src/model/index.ts';
import { Publisher } from '../../control-plane/src/publisher.ts';
import { backoffDelay } from '../../control-plane/src/store/backoff.ts';
import { ChangeFeed, FEED_APPLICATION_NAME } from '../../control-plane/src/store/change-feed.ts';
import { isRunning } from '../../control-plane/src/store/postgres.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { sleep } from '../helpers/net.ts';

let db: TestDatabase;
let prisma: PrismaClient;
let store: ConfigStore;
let adminUrl: string;

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
  store = new ConfigStore(prisma);
  const url = new URL(db.url);
  url.pathname = '/postgres';
  adminUrl = url.toString();
});

after(async () => {
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

async function sql<R extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** Polls `check` until it holds or `ms` pass (a bound for a broken build, not a speed assertion). */
async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

let upstreams = 0;
async function commitSomething(): Promise<number> {
  upstreams += 1;
  const spec = UpstreamSchema.parse({ name: `ops-${upstreams}`, endpoints: [{ host: '127.0.0.1', port: 8080 }] });
  return (await store.commit('ops', 'ops', (d) => d.create('upstreams', spec))).revision;
}

async function feedBackends(): Promise<number[]> {
  const rows = await sql<{ pid: number }>(adminUrl, 'SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2', [FEED_APPLICATION_NAME, db.name]);
  return rows.map((r) => r.pid);
}

function recordFeed(feed: ChangeFeed): { revisions: number[]; states: boolean[] } {
  const seen = { revisions: [] as number[], states: [] as boolean[] };
  feed.on('revision', (r) => seen.revisions.push(r));
  feed.on('connected', (c) => seen.states.push(c));
  return seen;
}

test('backoff delays grow exponentially up to the cap, jittered within [cap/2, cap]', () => {
  const policy = { initialMs: 100, maxMs: 1_000 };
  assert.deepEqual([1, 2, 3, 4, 5, 50].map((n) => backoffDelay(n, policy, () => 1)), [100, 200, 400, 800, 1_000, 1_000]);
  assert.deepEqual([1, 2, 3, 4, 5, 50].map((n) => backoffDelay(n, policy, () => 0)), [50, 100, 200, 400, 500, 500]);
});

test('the change feed reconnects after its backend is killed and reports the revision committed meanwhile', async () => {
  const feed = new ChangeFeed(db.url, { backoff: { initialMs: 300, maxMs: 1_000 } });
  const seen = recordFeed(feed);
  await feed.start();
  try {
    const [pid] = await feedBackends();
    assert.ok(pid, 'the feed has a backend');
    await sql(adminUrl, 'SELECT pg_terminate_backend($1)', [pid]);
    await eventually('the feed notices the killed backend', () => seen.states.includes(false));
    // Committed while the feed is away: its NOTIFY is lost, the reconnect must report it.
    const revision = await commitSomething();
    await eventually('the feed reconnects', () => seen.states.at(-1) === true && feed.connected);
    await eventually(`the feed reports revision ${revision}`, () => seen.revisions.includes(revision));
    const [newPid] = await feedBackends();
    assert.ok(newPid !== undefined && newPid !== pid, 'a new backend serves the feed');
    assert.deepEqual(seen.states, [true, false, true]);
  } finally {
    await feed.stop();
  }
});

/**
 * A loopback TCP relay to Postgres that can freeze the connections it carries:
 * they stay open but no byte passes, as when a NAT or firewall silently drops
 * the state of a long-idle connection. New connections after a freeze pass.
 */
async function freezableRelay(target: { host: string; port: number }): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  const pairs: Array<[Socket, Socket]> = [];
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    pairs.push([client, upstream]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return {
    port: address.port,
    freeze: () => {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    close: async () => {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('the change feed notices a half-open connection by its heartbeat, reconnects and reports the newest revision', async () => {
  const direct = new URL(db.url);
  const relay = await freezableRelay({ host: direct.hostname, port: Number(direct.port) });
  const viaRelay = new URL(db.url);
  viaRelay.port = String(relay.port);
  const feed = new ChangeFeed(viaRelay.toString(), { heartbeatMs: 100, timeoutMs: 500, backoff: { initialMs: 50, maxMs: 200 } });
  const seen = recordFeed(feed);
  await feed.start();
  try {
    assert.equal(feed.connected, true);
    relay.freeze();
    const revision = await commitSomething(); // its NOTIFY is stuck in the frozen connection
    await eventually('the feed gives up the silent connection', () => seen.states.includes(false));
    await eventually(`the feed reports revision ${revision} after reconnecting`, () => feed.connected && seen.revisions.includes(revision));
  } finally {
    await feed.stop();
    await relay.close();
  }
});

test('a State load that fails while Postgres refuses connections is retried, and the revision is published', async () => {
  const warnings: string[] = [];
  const cache = new SnapshotCache();
  const publisher = new Publisher({
    loadState: () => store.loadState(),
    cache,
    translateOptions: { listenerPort: 10_000, listenerAddress: '127.0.0.1' },
    log: { info() {}, warn: (msg) => warnings.push(msg) },
    retryBackoff: { initialMs: 100, maxMs: 400 },
  });
  const revision = await commitSomething();
  try {
    // Postgres itself turns the store away: no new connection to this database, existing ones killed.
    await sql(adminUrl, `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    await sql(adminUrl, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
    publisher.notify(revision);
    await eventually('the load fails', () => warnings.length > 0);
    assert.equal(publisher.published, -1);
    await sql(adminUrl, `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    // No further notify: the publisher must come back by itself.
    await eventually(`revision ${revision} is published`, () => publisher.published === revision);
  } finally {
    publisher.stop();
    await sql(adminUrl, `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
  }
});

test('after the control plane is killed with SIGKILL, the next start on the same data dir stops the orphaned Postgres and serves', async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sluice-kill9-'));
  await chmod(dataDir, 0o755); // as root, Postgres runs as the postgres user, who must reach data/
  const pgRoot = path.join(dataDir, 'postgres');
  const postmaster = async () => Number((await readFile(path.join(pgRoot, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  // DATABASE_URL empty: embedded Postgres under SLUICE_DATA_DIR, as `npm start` runs it.
  const env = { SLUICE_DATA_DIR: dataDir };
  const strays: number[] = [];
  let second: ControlPlane | undefined;
  try {
    const first = await startControlPlane({ databaseUrl: '', env });
    assert.equal((await first.api('POST', '/v1/upstreams', { name: 'kept', endpoints: [{ host: '127.0.0.1', port: 8080 }] })).status, 201);
    const orphan = await postmaster();
    strays.push(orphan);
    // The control plane's pid, as the store recorded it beside the cluster.
    const owner = (JSON.parse(await readFile(path.join(pgRoot, 'owner'), 'utf8')) as { pid: number }).pid;
    process.kill(owner, 'SIGKILL');
    await eventually('the control plane is gone', () => !isRunning(owner));
    assert.ok(isRunning(orphan), 'a SIGKILLed control plane leaves its Postgres running (the case under test)');

    second = await startControlPlane({ databaseUrl: '', env });
    strays.push(await postmaster());
    // The first start's admin token is in the database (a bootstrap token is only made when none exists).
    const kept = await fetch(`${second.adminUrl}/v1/upstreams/kept`, { headers: { authorization: `Bearer ${first.token}` } });
    assert.equal(kept.status, 200, 'the restarted control plane serves the same database');
    assert.ok(!isRunning(orphan), 'the orphaned Postgres was stopped');
    await second.stop();
    second = undefined;
    await eventually('no postgres is left running', () => strays.every((pid) => !isRunning(pid)));
  } finally {
    await second?.stop();
    for (const pid of strays.filter((p) => isRunning(p))) process.kill(pid, 'SIGINT');
    await eventually('cleanup', () => strays.every((pid) => !isRunning(pid))).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
});
