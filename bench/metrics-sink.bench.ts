// Control-plane cost of the fleet stats sink: 10 real Envoys (the pinned
// binary, Sluice's bootstrap sink, flushing every 5 s) each serving 1,000
// routes over 50 upstreams, streaming their stats to an in-process ADS server
// with the metrics service and a FleetWindow, as main.ts wires them. After one
// request per route per Envoy (so every route's stats exist), measures this
// process's CPU and memory over a quiet window while the flushes arrive.
//   node --import tsx bench/metrics-sink.bench.ts [--seconds 60]
import { parseArgs } from 'node:util';
import { AdsServer } from '../control-plane/src/xds/server.ts';
import { SnapshotCache } from '../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../control-plane/src/xds/registry.ts';
import { makeSnapshot } from '../control-plane/src/xds/snapshot.ts';
import { translate } from '../control-plane/src/translate/index.ts';
import { clusterName } from '../control-plane/src/translate/names.ts';
import { FleetWindow, metricsService, type PromFamily } from '../control-plane/src/telemetry/index.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { parseTestState } from '../test/helpers/gateway.ts';
import { freePort, sleep } from '../test/helpers/net.ts';
import { fetchVia, startHttpUpstream } from '../test/helpers/upstream.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, envoys: { type: 'string', default: '10' }, routes: { type: 'string', default: '1000' } } });
const SECONDS = Number(values.seconds);
const ENVOYS = Number(values.envoys);
const ROUTES = Number(values.routes);
const UPSTREAMS = 50;
const FLUSH_MS = 5_000;

const window = new FleetWindow();
let flushes = 0;
let series = 0;
let ingestMs = 0;
const counted = {
  ingest(nodeId: string, families: readonly PromFamily[]) {
    const started = performance.now();
    window.ingest(nodeId, families);
    ingestMs += performance.now() - started;
    flushes += 1;
    series = families.reduce((n, f) => n + (f.metric?.length ?? 0), 0);
  },
  nodeGone: (nodeId: string) => window.nodeGone(nodeId),
};

const cache = new SnapshotCache();
const server = new AdsServer({ cache, registry: new NodeRegistry(), services: [metricsService(counted)] });
const adsPort = await server.listen('127.0.0.1', 0);
const upstream = await startHttpUpstream({ name: 'bench' });
const state = parseTestState({
  revision: 1,
  upstreams: Array.from({ length: UPSTREAMS }, (_, i) => ({ name: `u${i}`, endpoints: [{ host: '127.0.0.1', port: upstream.port }] })),
  routes: Array.from({ length: ROUTES }, (_, i) => ({ name: `r${i}`, match: { path: { prefix: `/r${i}/` } }, action: { upstream: `u${i % UPSTREAMS}` } })),
});
window.setKnown({ routes: state.routes.map((r) => r.name), clusters: new Map(state.upstreams.map((u) => [clusterName(u.name), u.name])) });

const envoys: Array<{ handle: EnvoyHandle; port: number }> = [];
try {
  for (let i = 0; i < ENVOYS; i++) {
    const port = await freePort();
    const group = `bench-${i}`;
    const { listeners, routes, clusters, endpoints } = translate(state, { listenerPort: port, listenerAddress: '127.0.0.1' });
    cache.setSnapshot(group, makeSnapshot(1, [...listeners, ...routes, ...clusters, ...endpoints]));
    const handle = await startEnvoy({ adsPort, nodeId: `bench-envoy-${i}`, nodeCluster: group, metricsSink: { flushIntervalMs: FLUSH_MS }, startTimeoutMs: 60_000 });
    envoys.push({ handle, port });
  }
  for (const { handle } of envoys) await handle.waitReady(60_000);
  // One request per route per Envoy: Envoy creates a route's stats on its first request.
  for (const { port } of envoys) {
    let next = 0;
    const worker = async () => {
      while (next < ROUTES) await fetchVia(port, `/r${next++}/x`, { timeoutMs: 10_000 }).catch(() => undefined);
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  }
  await sleep(2 * FLUSH_MS); // every Envoy has flushed with all route stats

  globalThis.gc?.();
  const flushesBefore = flushes;
  ingestMs = 0;
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  let peakRss = 0;
  let peakHeap = 0;
  for (let s = 0; s < SECONDS; s++) {
    await sleep(1_000);
    const mem = process.memoryUsage();
    peakRss = Math.max(peakRss, mem.rss);
    peakHeap = Math.max(peakHeap, mem.heapUsed);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const wallMs = performance.now() - wallBefore;
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const n = flushes - flushesBefore;
  const sample = window.route('r0', 0);
  console.log(JSON.stringify({
    envoys: ENVOYS, routes: ROUTES, upstreams: UPSTREAMS, flushIntervalS: FLUSH_MS / 1000, seconds: SECONDS,
    flushesReceived: n, seriesPerFlush: series,
    cpuPercentOfOneCore: Number(((100 * cpuMs) / wallMs).toFixed(1)),
    cpuMsPerFlush: Number((cpuMs / Math.max(1, n)).toFixed(1)),
    ingestMsPerFlush: Number((ingestMs / Math.max(1, n)).toFixed(2)),
    peakRssMiB: Number((peakRss / 2 ** 20).toFixed(0)),
    peakHeapMiB: Number((peakHeap / 2 ** 20).toFixed(0)),
    routeR0Requests: sample.requests,
  }));
} finally {
  await Promise.all(envoys.map((e) => e.handle.stop()));
  await server.close();
  await upstream.close();
}
