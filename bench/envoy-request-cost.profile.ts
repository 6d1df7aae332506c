// What one gateway request costs Envoy under each control plane's config: the
// propagation bench probes every Envoy every 5 ms while a change propagates, so
// a dearer request path (request ids, trace context, identity-header removal,
// access log) is Envoy CPU the reference's bare listener does not spend. One
// Envoy each, ROUTES routes; REQUESTS sequential GETs per round on one kept-alive
// connection, to a path no route matches (a probe before its route exists) and
// to the route both tables hold last; rounds alternate which system goes first. Prints the Envoy's
// CPU per request, median of the rounds.
//
// Run: node --import tsx bench/envoy-request-cost.profile.ts
// Settings (environment): ROUTES=1000  REQUESTS=3000  ROUNDS=5  ROUTE_STATS=traffic_split
//   Sluice's gateway settings pass through, e.g. GATEWAY_ACCESS_LOG_PATH=off GATEWAY_TRACE_SAMPLING_PERCENT=0
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../control-plane/src/store/postgres.ts';
import { startControlPlane, type ControlPlane } from '../test/helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { startHttpUpstream } from '../test/helpers/upstream.ts';
import { startAnchor, type Anchor } from './anchor.ts';
import { openProbes, percentile, processCpuMs, timedJson, type EnvoyProbe } from './propagation-lib.ts';

const ROUTES = Number(process.env.ROUTES ?? 1000);
const REQUESTS = Number(process.env.REQUESTS ?? 3000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const ROUTE_STATS = process.env.ROUTE_STATS ?? 'traffic_split';

interface Side {
  label: string;
  envoy: EnvoyHandle;
  probe: EnvoyProbe;
  unrouted: number[];
  routed: number[];
}

/** Envoy CPU µs per request over REQUESTS sequential GETs of `target`, all answered `status`. */
async function cpuPerRequestUs(side: Side, target: string, status: number): Promise<number> {
  const before = processCpuMs(side.envoy.pid);
  for (let i = 0; i < REQUESTS; i++) {
    const got = await side.probe.status(target);
    if (got !== status) throw new Error(`${side.label}: GET ${target} answered ${got}, expected ${status}`);
  }
  return ((processCpuMs(side.envoy.pid) - before) * 1000) / REQUESTS;
}

async function setUpSluice(dbUrl: string, upstreamPort: number): Promise<{ cp: ControlPlane; envoy: EnvoyHandle }> {
  const cp = await startControlPlane({ databaseUrl: dbUrl, env: { GATEWAY_ROUTE_STATS: ROUTE_STATS } });
  const routes = Array.from({ length: ROUTES }, (_, i) => ({ name: `r-${i}`, match: { path: { prefix: `/r/${i}/` } }, action: { upstream: 'bench' } }));
  const config = { upstreams: [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstreamPort }] }], routes };
  const res = await timedJson(`${cp.adminUrl}/v1/config?wait=applied`, 'PUT', config, { authorization: `Bearer ${cp.token}` }, 60_000);
  if (res.status !== 200) throw new Error(`Sluice: PUT /v1/config answered ${res.status}`);
  const envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'cost-sluice', nodeCluster: 'default', startTimeoutMs: 60_000 });
  await envoy.waitReady(60_000);
  return { cp, envoy };
}

async function setUpReference(upstreamPort: number): Promise<{ anchor: Anchor; envoy: EnvoyHandle }> {
  const anchor = await startAnchor({ upstreamPort });
  await anchor.apply(Array.from({ length: ROUTES }, (_, i) => ({ name: `r-${i}`, prefix: `/r/${i}/` })), { replace: true });
  const envoy = await startEnvoy({ adsPort: anchor.xdsPort, nodeId: 'cost-reference', nodeCluster: 'default', metricsSink: false, startTimeoutMs: 60_000 });
  await envoy.waitReady(60_000);
  return { anchor, envoy };
}

const pgRoot = await mkdtemp(path.join(os.tmpdir(), 'sluice-cost-pg-'));
const db = await startEmbeddedPostgres({ rootDir: pgRoot, database: 'sluice', persistent: false, fast: true, handleSignals: true });
const upstream = await startHttpUpstream({ name: 'bench' });
const stops: Array<() => Promise<unknown>> = [];
try {
  const sluice = await setUpSluice(db.url, upstream.port);
  stops.push(() => sluice.envoy.stop(), () => sluice.cp.stop());
  const reference = await setUpReference(upstream.port);
  stops.push(() => reference.envoy.stop(), () => reference.anchor.stop());
  const sides: Side[] = [];
  for (const [label, envoy, port] of [['Sluice', sluice.envoy, sluice.cp.gatewayPort], ['reference', reference.envoy, reference.anchor.gatewayPort]] as const) {
    const [probe] = await openProbes(port, [envoy.pid]);
    sides.push({ label, envoy, probe: probe!, unrouted: [], routed: [] });
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      side.unrouted.push(await cpuPerRequestUs(side, '/none/probe', 404));
      side.routed.push(await cpuPerRequestUs(side, `/r/${ROUTES - 1}/probe`, 200)); // the last route in both tables' order
    }
  }
  const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50).toFixed(0);
  console.log(`Envoy CPU per request (µs, median of ${ROUNDS} rounds of ${REQUESTS} sequential GETs; ${ROUTES} routes; ROUTE_STATS=${ROUTE_STATS})`);
  for (const side of sides) console.log(`  ${side.label.padEnd(10)} no route (404): ${median(side.unrouted).padStart(5)}   routed (200): ${median(side.routed).padStart(5)}`);
  for (const side of sides) side.probe.close();
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await upstream.close();
  await db.stop();
}
