// Issue 11 item 5's acceptance: two real Envoys (the real control plane's
// bootstrap sink, flushing every second) serve a known mix through one route:
// 900 answers after a 150 ms upstream delay and 100 immediate 503s. The
// control plane merges both Envoys' metrics_service streams, and
// GET /v1/routes/{name}/stats reports the counts exactly and p50/p99 inside
// the Envoy histogram bucket that holds the known latency.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

const FLUSH_MS = 1_000;
const SLOW_MS = 150;
const OK_REQUESTS = 900;
const FAILED_REQUESTS = 100;

let db: TestDatabase;
let cp: ControlPlane;
let upstream: HttpUpstream;
const envoys: EnvoyHandle[] = [];

interface StatsBody {
  requests: number;
  status_2xx: number;
  status_4xx: number;
  status_5xx: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

before(async () => {
  db = await createTestDatabase();
  // Both Envoys bind the same gateway port (SO_REUSEPORT): the kernel spreads connections over them.
  cp = await startControlPlane({ databaseUrl: db.url, gatewayPort: await freePort() });
  upstream = await startHttpUpstream({ name: 'mixed' });
  for (const nodeId of ['stats-a', 'stats-b']) {
    envoys.push(await startEnvoy({ adsPort: cp.xdsPort, nodeId, nodeCluster: 'default', metricsSink: { flushIntervalMs: FLUSH_MS } }));
  }
  const created = await cp.api('POST', '/v1/upstreams', { name: 'mixed', endpoints: [{ host: '127.0.0.1', port: upstream.port }] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const route = await cp.api('POST', '/v1/routes?wait=applied&timeout=20000', { name: 'mix', match: { path: { prefix: '/' } }, action: { upstream: 'mixed' } });
  assert.equal(route.status, 201, JSON.stringify(route.body));
  assert.equal((route.body as { applied?: boolean }).applied, true, 'both Envoys hold the route before traffic starts');
  for (const envoy of envoys) await envoy.waitReady();
});

after(async () => {
  await Promise.all(envoys.map((e) => e.stop()));
  await cp?.stop();
  await upstream?.close();
  await db?.drop();
  await stopTestPostgres();
});

/** Sends `paths` through the gateway, `concurrency` at a time, each on its own connection; returns the statuses seen. */
async function send(paths: string[], concurrency: number): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const path = paths[next++]!;
      const { status } = await fetchVia(cp.gatewayPort, path, { timeoutMs: 10_000 });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

async function stats(path: string): Promise<StatsBody> {
  const res = await cp.api('GET', path);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as StatsBody;
}

test('route and upstream stats merge both Envoys: exact counts, p50/p99 in the latency bucket', async () => {
  const paths = [...Array.from({ length: OK_REQUESTS }, () => `/delay/${SLOW_MS}`), ...Array.from({ length: FAILED_REQUESTS }, () => '/status/503')];
  const statuses = await send(paths, 25);
  assert.deepEqual([...statuses].sort(), [[200, OK_REQUESTS], [503, FAILED_REQUESTS]]);

  // Both Envoys served part of it (1,000 connections spread by the kernel: all on one
  // has probability 2 * 2^-1000), so the numbers below are a merge of two streams.
  for (const envoy of envoys) {
    const served = Object.entries(await envoy.stats('route\\.mix\\.upstream_rq_completed')).reduce((n, [, v]) => n + v, 0);
    assert.ok(served > 0, `${envoy.nodeId} served some of the traffic`);
  }

  // Wait for the flushes that carry the last requests, then two more: the counts must not move past exact.
  const deadline = Date.now() + 30_000;
  while ((await stats('/v1/routes/mix/stats')).requests < OK_REQUESTS + FAILED_REQUESTS && Date.now() < deadline) await sleep(250);
  await sleep(2 * FLUSH_MS + 500);

  for (const path of ['/v1/routes/mix/stats', '/v1/upstreams/mixed/stats']) {
    const body = await stats(path);
    assert.equal(body.requests, OK_REQUESTS + FAILED_REQUESTS, path);
    assert.equal(body.status_2xx, OK_REQUESTS, path);
    assert.equal(body.status_4xx, 0, path);
    assert.equal(body.status_5xx, FAILED_REQUESTS, path);
    // Envoy's upstream_rq_time buckets around 150 ms are (100, 250]: the 50th and 99th
    // percentiles both fall among the 900 delayed answers (the 503s are the fastest 10%).
    assert.ok(body.p50_ms !== null && body.p50_ms > 100 && body.p50_ms <= 250, `${path} p50 ${body.p50_ms}`);
    assert.ok(body.p99_ms !== null && body.p99_ms > 100 && body.p99_ms <= 250, `${path} p99 ${body.p99_ms}`);
  }

  assert.equal((await cp.api('GET', '/v1/routes/nope/stats')).status, 404);
  assert.equal((await cp.api('GET', '/v1/routes/mix/stats?since_seconds=0')).status, 400);
  const metrics = await (await fetch(`${cp.adminUrl}/metrics`)).text();
  assert.match(metrics, /sluice_fleet_requests_total\{kind="route",name="mix",class="5xx"\} 100\n/);
});
