// A thousand ADS streams on one real control plane (issue 12, item 4): 1,000
// synthetic SotW ADS streams that subscribe and ACK like Envoys, plus two real
// Envoys, all on the real product (control-plane/src/main.ts) and real Postgres.
// - the control plane's RSS stays under 1 GiB with everything connected;
// - a write with ?wait=applied returns applied:true, and by then every counted
//   node (every stream here ACKed) holds the new route;
// - one stream that stops reading (HTTP/2 paused, never answers) delays no
//   other: every other stream and both Envoys get the next revision while it
//   has not ACKed, and /v1/fleet reports it slow (the server's threshold, 5 s).
// No timing assertions: each wait has a generous deadline and only fails the
// test if something never arrives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { remoteFleetNodes } from '../../control-plane/src/store/fleet-status.ts';
import { createPrisma } from '../../control-plane/src/store/prisma.ts';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { startSyntheticFleet, type SyntheticFleet } from '../helpers/synthetic-ads.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

const STREAMS = Number(process.env.ADS_SCALE_STREAMS ?? 1_000);
const RSS_LIMIT_BYTES = 1024 * 1024 * 1024;
const STALLED = 0;

let db: TestDatabase;
let upstream: HttpUpstream;
let cp: ControlPlane;
let fleet: SyntheticFleet | undefined;
const envoys: EnvoyHandle[] = [];

interface FleetView {
  revision: number;
  nodes: Array<{ node_id: string; synced_revision: number | null; slow: boolean; pending_since: string | null; pending_types: string[] }>;
}

function route(name: string) {
  return { name, match: { path: { prefix: `/${name}/` } }, action: { upstream: 'up' } };
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  assert.ok(kib, 'VmRSS in /proc/<pid>/status');
  return Number(kib) * 1024;
}

async function fleetView(): Promise<FleetView> {
  const res = await cp.api('GET', '/v1/fleet');
  assert.equal(res.status, 200);
  return res.body as FleetView;
}

/** Polls /v1/fleet until `ready` holds (bounded by `timeoutMs`). */
async function fleetUntil(ready: (view: FleetView) => boolean, timeoutMs: number, what: string): Promise<FleetView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await fleetView();
    if (ready(view)) return view;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(200);
  }
}

before(async () => {
  db = await createTestDatabase();
  upstream = await startHttpUpstream({ name: 'up' });
  cp = await startControlPlane({ databaseUrl: db.url });
  const put = await cp.api('PUT', '/v1/config?wait=applied&timeout=30000', {
    upstreams: [{ name: 'up', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    routes: [route('r0')],
  });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  for (let i = 0; i < 2; i++) envoys.push(await startEnvoy({ adsPort: cp.xdsPort, nodeId: `scale-envoy-${i}`, nodeCluster: 'default' }));
  fleet = await startSyntheticFleet({ port: cp.xdsPort, streams: STREAMS, nodePrefix: 'synthetic', group: 'default' });
  await fleet.waitForRoute('r0', { timeoutMs: 60_000 });
});

after(async () => {
  fleet?.close();
  await Promise.all(envoys.map((e) => e.stop()));
  await cp?.stop();
  await upstream?.close();
  await db?.drop();
  await stopTestPostgres();
});

test(`${STREAMS} synthetic ADS streams and 2 Envoys: control-plane RSS under 1 GiB`, async (t) => {
  const view = await fleetUntil((v) => v.nodes.length === STREAMS + 2, 30_000, 'every stream listed as counted');
  assert.equal(view.nodes.length, STREAMS + 2);
  const rss = await rssBytes(cp.pid);
  t.diagnostic(`control-plane RSS with ${STREAMS} streams and 2 Envoys: ${(rss / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(rss < RSS_LIMIT_BYTES, `control-plane RSS ${(rss / 2 ** 20).toFixed(0)} MiB with ${STREAMS} streams`);
});

test('a write with ?wait=applied returns applied:true once every counted node holds it', async () => {
  const res = await cp.api('POST', '/v1/routes?wait=applied&timeout=60000', route('r1'));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal((res.body as { applied?: boolean }).applied, true);
  // applied:true means every stream had ACKed it before the answer was sent: no waiting here.
  const missing = fleet!.streams.filter((s) => !fleet!.ackedRoute(s.index, 'r1')).map((s) => s.nodeId);
  assert.deepEqual(missing, []);
  const view = await fleetView();
  for (const envoy of envoys) {
    const node = view.nodes.find((n) => n.node_id === envoy.nodeId);
    assert.ok(node && node.synced_revision !== null && node.synced_revision >= view.revision, `${envoy.nodeId} synced`);
  }
});

test('a stalled stream (never reads) delays no other, and /v1/fleet reports it slow', async () => {
  fleet!.stall(STALLED);
  const stalledId = fleet!.streams[STALLED]!.nodeId;
  const res = await cp.api('POST', '/v1/routes', route('r2'));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const revision = (res.body as { revision: number }).revision;
  await fleet!.waitForRoute('r2', { timeoutMs: 60_000, except: new Set([STALLED]) });
  // Both Envoys hold the new revision too, and the route answers through one of them.
  await fleetUntil((v) => envoys.every((e) => (v.nodes.find((n) => n.node_id === e.nodeId)?.synced_revision ?? -1) >= revision), 30_000, 'both Envoys synced');
  assert.equal(fleet!.ackedRoute(STALLED, 'r2'), undefined, 'the stalled stream never ACKed the new route');
  let served = false;
  for (let i = 0; i < 50 && !served; i++) served = (await fetchVia(cp.gatewayPort, '/r2/x')).status === 200 || (await sleep(100), false);
  assert.ok(served, '/r2/ answers through the gateway');

  // The server's threshold is 5 s; allow it plenty of room on a loaded machine.
  const view = await fleetUntil((v) => v.nodes.some((n) => n.node_id === stalledId && n.slow), 30_000, 'stalled stream reported slow');
  const stalled = view.nodes.find((n) => n.node_id === stalledId)!;
  assert.ok(stalled.pending_since, 'pending_since set');
  assert.ok(stalled.pending_types.includes('type.googleapis.com/envoy.config.route.v3.RouteConfiguration'), JSON.stringify(stalled));
  assert.ok((stalled.synced_revision ?? -1) < revision);
  const slowOthers = view.nodes.filter((n) => n.slow && n.node_id !== stalledId).map((n) => n.node_id);
  assert.deepEqual(slowOthers, [], 'only the stalled stream is slow');

  // Other replicas see it too: the mark is in fleet_nodes, as any other replica reads it.
  const prisma = createPrisma(db.url);
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const remote = (await remoteFleetNodes(prisma, 'another-replica')).find((n) => n.nodeId === stalledId);
      if (remote?.slow) {
        assert.ok(remote.slow.pendingTypes.includes('type.googleapis.com/envoy.config.route.v3.RouteConfiguration'));
        break;
      }
      if (Date.now() > deadline) assert.fail('the slow mark never reached fleet_nodes');
      await sleep(200);
    }
  } finally {
    await prisma.$disconnect();
  }
});
