// Route propagation through the whole product: admin API -> Postgres commit ->
// change feed -> translate -> ADS push -> every Envoy ACKed (the API's
// ?wait=applied returns only then) and the route answering 200 at the gateway.
// Run: node --import tsx bench/propagation.bench.ts   (ENVOYS, ROUTES, SAMPLES)
import os from 'node:os';
import { startControlPlane } from '../test/helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { createTestDatabase } from '../test/helpers/postgres.ts';
import { fetchVia, startHttpUpstream } from '../test/helpers/upstream.ts';

const ENVOYS = Number(process.env.ENVOYS ?? 10);
const ROUTES = Number(process.env.ROUTES ?? 1_000);
const SAMPLES = Number(process.env.SAMPLES ?? 40);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const db = await createTestDatabase();
const upstream = await startHttpUpstream({ name: 'bench' });
const cp = await startControlPlane({ databaseUrl: db.url });
const envoys: EnvoyHandle[] = [];
try {
  // All Envoys share the gateway port (Envoy binds listeners with SO_REUSEPORT).
  for (let i = 0; i < ENVOYS; i++) envoys.push(await startEnvoy({ adsPort: cp.xdsPort, nodeId: `bench-${i}`, nodeCluster: 'default' }));
  const config = {
    upstreams: [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    routes: Array.from({ length: ROUTES }, (_, i) => ({ name: `existing-${i}`, match: { path: { prefix: `/existing/${i}/` } }, action: { upstream: 'bench' } })),
  };
  const bulkStart = performance.now();
  const bulk = await cp.api('PUT', '/v1/config?wait=applied&timeout=60000', config);
  const bulkMs = performance.now() - bulkStart;
  if (bulk.status !== 200) throw new Error(`PUT /v1/config: ${bulk.status} ${JSON.stringify(bulk.body)}`);

  const applied: number[] = [];
  const serving: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const started = performance.now();
    const res = await cp.api('POST', '/v1/routes?wait=applied', { name: `new-${i}`, match: { path: { prefix: `/new/${i}` } }, action: { upstream: 'bench' } });
    if (res.status !== 201 || (res.body as { applied?: boolean }).applied === false) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
    applied.push(performance.now() - started);
    while ((await fetchVia(cp.gatewayPort, `/new/${i}`)).status !== 200) { /* poll */ }
    serving.push(performance.now() - started);
  }
  console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}; envoys=${ENVOYS} existing routes=${ROUTES} samples=${SAMPLES}`);
  console.log(`${ROUTES} routes in one PUT /v1/config, applied at all Envoys: ${bulkMs.toFixed(0)} ms (budget 2000 ms, ratio ${(bulkMs / 2000).toFixed(2)})`);
  console.log(`new route ACKed by all ${ENVOYS} Envoys: p50 ${percentile(applied, 50).toFixed(1)} ms (budget 15, ratio ${(percentile(applied, 50) / 15).toFixed(2)}), p99 ${percentile(applied, 99).toFixed(1)} ms (budget 50, ratio ${(percentile(applied, 99) / 50).toFixed(2)})`);
  console.log(`new route answering 200 at the gateway: p50 ${percentile(serving, 50).toFixed(1)} ms, p99 ${percentile(serving, 99).toFixed(1)} ms`);
} finally {
  for (const envoy of envoys) await envoy.stop();
  await cp.stop();
  await upstream.close();
  await db.drop();
  process.exit(0);
}
