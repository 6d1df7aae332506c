// The whole control plane as users run it (main.ts as a child process, real
// Postgres, real Envoys): admin API writes reach Envoy, rollback, canary steps,
// fleet status with a NACK, and a Postgres outage.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../control-plane/src/store/postgres.ts';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { startLoad, sharePercent } from '../helpers/load.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { requestsForMissRate } from '../helpers/stats.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle;
let stable: HttpUpstream;
let canary: HttpUpstream;

interface FleetNode { node_id?: string; nodeId?: string; last_nack?: { message: string }; lastNack?: { message: string } }

before(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ databaseUrl: db.url });
  stable = await startHttpUpstream({ name: 'stable' });
  canary = await startHttpUpstream({ name: 'canary' });
  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'gw-1', nodeCluster: 'default' });
  const created = await Promise.all([
    cp.api('POST', '/v1/upstreams', { name: 'stable', endpoints: [{ host: '127.0.0.1', port: stable.port }] }),
    cp.api('POST', '/v1/upstreams', { name: 'canary', endpoints: [{ host: '127.0.0.1', port: canary.port }] }),
  ]);
  for (const res of created) assert.equal(res.status, 201, JSON.stringify(res.body));
});

after(async () => {
  await envoy?.stop();
  await cp?.stop();
  await stable?.close();
  await canary?.close();
  await db?.drop();
  await stopTestPostgres();
});

/** Polls Envoy until `check` holds; returns ms from `since`. Fails after 5 s. */
async function until(check: () => Promise<boolean>, since: number, what: string): Promise<number> {
  const deadline = since + 5_000;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return Date.now() - since;
    await sleep(5);
  }
  throw new Error(`timed out: ${what}`);
}

const statusOf = async (p: string) => (await fetchVia(cp.gatewayPort, p, { timeoutMs: 1_000 })).status;

// How fast a route goes live is measured in bench/, not asserted here (no timed assertions in tests).
test('a route created through the API serves; deleting it makes Envoy answer 404', async () => {
  const created = await cp.api('POST', '/v1/routes', { name: 'hello', match: { path: { prefix: '/hello' } }, action: { upstream: 'stable' } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await until(async () => (await statusOf('/hello')) === 200, Date.now(), 'route serves');

  const deleted = await cp.api('DELETE', '/v1/routes/hello');
  assert.equal(deleted.status, 204);
  await until(async () => (await statusOf('/hello')) === 404, Date.now(), 'route gone');
});

/**
 * What an Envoy holds from xDS (listeners, clusters, endpoints, routes), keyed
 * by type and name, without what legitimately differs between two deliveries
 * of the same content: version labels and update timestamps.
 */
async function heldConfig(handle: EnvoyHandle): Promise<Record<string, unknown>> {
  const dump = await handle.configDump('include_eds');
  const held: Record<string, unknown> = {};
  const keep = (type: string, resource: unknown) => {
    const name = (resource as { name?: string; cluster_name?: string } | undefined)?.name ?? (resource as { cluster_name?: string } | undefined)?.cluster_name;
    if (resource !== undefined) held[`${type}/${name ?? '?'}`] = withoutVersions(resource);
  };
  for (const section of dump.configs) {
    const entries = (field: string) => (section[field] as Array<Record<string, unknown>> | undefined) ?? [];
    for (const e of entries('dynamic_listeners')) keep('listener', (e.active_state as Record<string, unknown> | undefined)?.listener);
    for (const e of entries('dynamic_active_clusters')) keep('cluster', e.cluster);
    for (const e of entries('dynamic_endpoint_configs')) keep('endpoints', e.endpoint_config);
    for (const e of entries('dynamic_route_configs')) keep('routes', e.route_config);
  }
  return held;
}

function withoutVersions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutVersions);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => key !== 'version_info' && key !== 'last_updated')
      .map(([key, item]) => [key, withoutVersions(item)]),
  );
}

test('rollback restores an earlier revision as a new one, and Envoy holds exactly what it held then', async () => {
  const first = await cp.api('POST', '/v1/routes?wait=applied', { name: 'pinned', match: { path: { prefix: '/pinned' } }, action: { upstream: 'stable' } });
  assert.equal(first.status, 201);
  const revision = (first.body as { revision: number }).revision;
  await until(async () => (await fetchVia(cp.gatewayPort, '/pinned')).headers['x-upstream'] === 'stable', Date.now(), 'pinned to stable');
  const heldBefore = await heldConfig(envoy);
  assert.ok(Object.keys(heldBefore).some((k) => k.startsWith('routes/')) && Object.keys(heldBefore).some((k) => k.startsWith('cluster/')), JSON.stringify(Object.keys(heldBefore)));
  const moved = await cp.api('PUT', '/v1/routes/pinned?wait=applied', { name: 'pinned', match: { path: { prefix: '/pinned' } }, action: { upstream: 'canary' } });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  await until(async () => (await fetchVia(cp.gatewayPort, '/pinned')).headers['x-upstream'] === 'canary', Date.now(), 'moved to canary');
  assert.notDeepEqual(await heldConfig(envoy), heldBefore);

  const rolled = await cp.api('POST', `/v1/revisions/${revision}:rollback?wait=applied`);
  assert.equal(rolled.status, 200, JSON.stringify(rolled.body));
  assert.ok((rolled.body as { revision: number }).revision > (moved.body as { revision: number }).revision);
  await until(async () => (await fetchVia(cp.gatewayPort, '/pinned')).headers['x-upstream'] === 'stable', Date.now(), 'rolled back to stable');
  assert.deepEqual(await heldConfig(envoy), heldBefore, 'after the rollback Envoy holds what it held at the restored revision');
});

/**
 * Requests measured per canary step. Envoy picks each request's cluster at
 * random, so the canary count is Binomial(n, weight). The two random steps
 * (10 and 50 percent) share a false-failure budget of 1 in 10,000 runs: each
 * gets n with an exact binomial miss rate under 1 in 20,000 for the 3-point
 * bound (1,700 requests at 10%, 4,600 at 50%; 800 at 50/50 failed ~8% of runs).
 * The 0 and 100 percent steps are exact, 400 requests each.
 */
const SPLIT_TOLERANCE_POINTS = 3;
const measuredRequests = (canaryWeight: number) =>
  requestsForMissRate(canaryWeight / 100, SPLIT_TOLERANCE_POINTS / 100, 1 / 20_000, { minimum: 400 });

test('canary steps through the API under load: no failed request, split within 3 points', async () => {
  const created = await cp.api('POST', '/v1/routes?wait=applied', { name: 'shop', match: { path: { prefix: '/shop' } }, action: { upstream: 'stable' } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const background = startLoad({ port: cp.gatewayPort, path: '/shop', requests: 2_000, concurrency: 2 });
  for (const [stableWeight, canaryWeight] of [[100, 0], [90, 10], [50, 50], [0, 100]] as const) {
    const weights = [{ upstream: 'stable', weight: stableWeight }, { upstream: 'canary', weight: canaryWeight }].filter((w) => w.weight > 0);
    const step = await cp.api('POST', '/v1/routes/shop:canary?wait=applied', { weights });
    assert.equal(step.status, 200, JSON.stringify(step.body));
    const measured = await startLoad({ port: cp.gatewayPort, path: '/shop', requests: measuredRequests(canaryWeight), concurrency: 4 }).result;
    assert.equal(measured.failed, 0, JSON.stringify([...measured.failures]));
    const share = sharePercent(measured, 'canary');
    assert.ok(Math.abs(share - canaryWeight) <= SPLIT_TOLERANCE_POINTS, `step ${stableWeight}/${canaryWeight}: canary got ${share.toFixed(1)}% of ${measured.total}`);
  }
  const total = await background.result;
  assert.equal(total.failed, 0, JSON.stringify([...total.failures]));
  assert.ok(total.total >= 2_000);
});

test('fleet status shows a NACK with Envoy\'s error for the node that sent it', async () => {
  // A second control plane whose gateway port is already taken: its Envoy
  // cannot bind the listener and NACKs it.
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => blocker.once('listening', resolve));
  const takenPort = (blocker.address() as net.AddressInfo).port;
  const otherDb = await createTestDatabase();
  const other = await startControlPlane({ databaseUrl: otherDb.url, gatewayPort: takenPort });
  const victim = await startEnvoy({ adsPort: other.xdsPort, nodeId: 'nack-1', nodeCluster: 'default' });
  try {
    await other.api('POST', '/v1/upstreams', { name: 'stable', endpoints: [{ host: '127.0.0.1', port: stable.port }] });
    await other.api('POST', '/v1/routes', { name: 'hello', match: { path: { prefix: '/' } }, action: { upstream: 'stable' } });
    let node: FleetNode | undefined;
    await until(async () => {
      const fleet = await other.api('GET', '/v1/fleet');
      const nodes = (fleet.body as { nodes: FleetNode[] }).nodes;
      node = nodes.find((n) => (n.node_id ?? n.nodeId) === 'nack-1');
      return (node?.last_nack ?? node?.lastNack) !== undefined;
    }, Date.now(), 'NACK in fleet status');
    assert.match((node!.last_nack ?? node!.lastNack)!.message, /bind|address already in use/i);
  } finally {
    await victim.stop();
    await other.stop();
    await otherDb.drop();
    blocker.close();
  }
});

test('with Postgres down: writes get 503, fleet reads work, Envoy keeps serving; writes work again after', async () => {
  const rootDir = await mkdtemp(path.join(tmpdir(), 'sluice-outage-pg-'));
  const port = await freePort();
  let pg = await startEmbeddedPostgres({ rootDir, port, database: 'sluice', persistent: true, fast: true });
  const outage = await startControlPlane({ databaseUrl: pg.url });
  const edge = await startEnvoy({ adsPort: outage.xdsPort, nodeId: 'outage-1', nodeCluster: 'default' });
  try {
    await outage.api('POST', '/v1/upstreams', { name: 'stable', endpoints: [{ host: '127.0.0.1', port: stable.port }] });
    await outage.api('POST', '/v1/routes?wait=applied', { name: 'up', match: { path: { prefix: '/up' } }, action: { upstream: 'stable' } });
    await until(async () => (await fetchVia(outage.gatewayPort, '/up')).status === 200, Date.now(), 'serving before outage');

    await pg.stop();
    const write = await outage.api('POST', '/v1/routes', { name: 'down', match: { path: { prefix: '/down' } }, action: { upstream: 'stable' } });
    assert.equal(write.status, 503, JSON.stringify(write.body));
    assert.match(JSON.stringify(write.body), /unavailable|database|postgres/i);
    const fleet = await outage.api('GET', '/v1/fleet');
    assert.equal(fleet.status, 200);
    assert.equal((await fetchVia(outage.gatewayPort, '/up')).status, 200);

    pg = await startEmbeddedPostgres({ rootDir, port, database: 'sluice', persistent: true, fast: true });
    const since = Date.now();
    let again = { status: 0, body: undefined as unknown };
    await until(async () => {
      again = await outage.api('POST', '/v1/routes', { name: 'down', match: { path: { prefix: '/down' } }, action: { upstream: 'stable' } });
      return again.status === 201;
    }, since, 'writes work again');
    await until(async () => (await fetchVia(outage.gatewayPort, '/down')).status === 200, Date.now(), 'new route serves after the outage');
  } finally {
    await edge.stop();
    await outage.stop();
    await pg.stop();
  }
});
