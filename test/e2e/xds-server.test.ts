// Sluice's ADS server against real Envoys (state-of-the-world and delta), with
// hand-built resources so only the server is under test here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { ENVOY_TYPES, TYPE } from '../../control-plane/src/xds/resources.ts';
import { AdsServer } from '../../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../../control-plane/src/xds/snapshot.ts';
import { DeltaStream } from '../../control-plane/src/xds/delta.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { startLoad } from '../helpers/load.ts';
import { freePort } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';
import { fixtureResources, resource, type FixtureConfig } from '../helpers/xds-fixtures.ts';

const GROUP = 'edge';
let cache: SnapshotCache;
let registry: NodeRegistry;
let server: AdsServer;
let adsPort: number;
let upstreamA: HttpUpstream;
let upstreamB: HttpUpstream;
let sotw: EnvoyHandle;
let delta: EnvoyHandle;
let sotwPort: number;
let deltaPort: number;
let revision = 0;
const started: EnvoyHandle[] = [];

async function startServer(port = 0): Promise<number> {
  server = new AdsServer({ cache, registry, recordDeltaSends: true });
  return server.listen('127.0.0.1', port);
}

/** Both Envoys share the group's config but listen on their own ports: one snapshot per node via its own group. */
function publish(config: Omit<FixtureConfig, 'listenerPort'>, extra: ReturnType<typeof fixtureResources> = []): number {
  revision += 1;
  cache.setSnapshot(`${GROUP}-sotw`, makeSnapshot(revision, [...fixtureResources({ ...config, listenerPort: sotwPort }), ...extra]));
  cache.setSnapshot(`${GROUP}-delta`, makeSnapshot(revision, [...fixtureResources({ ...config, listenerPort: deltaPort }), ...extra]));
  return revision;
}

async function serves(envoy: EnvoyHandle, port: number, expect: { tag?: string; upstream?: string }) {
  await envoy.waitFor(async () => {
    const res = await fetchVia(port, '/', { timeoutMs: 1_000 });
    if (res.status !== 200) return false;
    if (expect.tag !== undefined && res.headers['x-config'] !== expect.tag) return false;
    return expect.upstream === undefined || res.headers['x-upstream'] === expect.upstream;
  }, 10_000, `listener ${port} serving ${JSON.stringify(expect)}`);
}

function deltaStream(): DeltaStream {
  const stream = [...server.streams].find((s): s is DeltaStream => s instanceof DeltaStream);
  assert.ok(stream, 'no delta stream connected');
  return stream;
}

before(async () => {
  cache = new SnapshotCache();
  registry = new NodeRegistry();
  adsPort = await startServer();
  upstreamA = await startHttpUpstream({ name: 'a' });
  upstreamB = await startHttpUpstream({ name: 'b' });
  sotwPort = await freePort();
  deltaPort = await freePort();
  publish({ routes: [{ prefix: '/', cluster: 'cluster-a' }], clusters: [{ name: 'cluster-a', port: upstreamA.port }], tag: 'v1' });
  sotw = await startEnvoy({ adsPort, nodeId: 'sotw-1', nodeCluster: `${GROUP}-sotw` });
  delta = await startEnvoy({ adsPort, nodeId: 'delta-1', nodeCluster: `${GROUP}-delta`, delta: true });
  started.push(sotw, delta);
});

after(async () => {
  await Promise.all(started.map((e) => e.stop()));
  await server?.close();
  await upstreamA?.close();
  await upstreamB?.close();
});

test('a SotW and a delta Envoy both get the config and proxy to the upstream', async () => {
  await serves(sotw, sotwPort, { tag: 'v1', upstream: 'a' });
  await serves(delta, deltaPort, { tag: 'v1', upstream: 'a' });
  const nodes = registry.list();
  assert.deepEqual(nodes.map((n) => [n.nodeId, n.protocol]).sort(), [['delta-1', 'delta'], ['sotw-1', 'sotw']]);
  for (const node of nodes) {
    assert.equal(node.syncedRevision, revision, `${node.nodeId} synced`);
    for (const type of ENVOY_TYPES) assert.ok(node.acked[type], `${node.nodeId} acked ${type}`);
  }
});

test('a one-route change sends only the RouteConfiguration on the delta stream', async () => {
  const stream = deltaStream();
  const before = stream.sent.length;
  const rev = publish({ routes: [{ prefix: '/', cluster: 'cluster-a' }], clusters: [{ name: 'cluster-a', port: upstreamA.port }], tag: 'v2' });
  await serves(delta, deltaPort, { tag: 'v2' });
  await delta.waitFor(() => registry.list().find((n) => n.nodeId === 'delta-1')?.syncedRevision === rev, 5_000, 'delta synced');
  const sent = stream.sent.slice(before);
  assert.deepEqual(sent, [{ typeUrl: TYPE.route, names: ['fixture-routes'], removed: [] }]);
  // Envoy's own view: the route config's version is the one we sent.
  const dump = await delta.configDump();
  const routes = dump.configs.find((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump') as { dynamic_route_configs?: Array<{ version_info: string }> };
  // Delta reports per-resource versions: the content hash of the route table we sent.
  const sentVersion = cache.current(`${GROUP}-delta`)?.types.get(TYPE.route)?.get('fixture-routes')?.version;
  assert.ok(sentVersion);
  assert.equal(routes.dynamic_route_configs?.[0]?.version_info, sentVersion);
  await serves(sotw, sotwPort, { tag: 'v2' });
});

test('moving a route to a new cluster and deleting the old one in one change loses no request', async () => {
  const load = startLoad({ port: sotwPort, requests: 1_500, concurrency: 4 });
  const loadDelta = startLoad({ port: deltaPort, requests: 1_500, concurrency: 4 });
  await new Promise((resolve) => setTimeout(resolve, 150));
  publish({ routes: [{ prefix: '/', cluster: 'cluster-b' }], clusters: [{ name: 'cluster-b', port: upstreamB.port }], tag: 'v3' });
  const [resultSotw, resultDelta] = await Promise.all([load.result, loadDelta.result]);
  for (const result of [resultSotw, resultDelta]) {
    assert.equal(result.failed, 0, `failures: ${JSON.stringify([...result.failures])}`);
    assert.ok((result.byUpstream.get('b') ?? 0) > 0, 'traffic moved to b');
  }
  await serves(sotw, sotwPort, { tag: 'v3', upstream: 'b' });
  const clusters = (await sotw.clusters()).map((c) => c.name);
  assert.ok(!clusters.includes('cluster-a'), 'cluster-a removed after the move');
});

test('a NACKed config is recorded, not re-sent, and later Envoys get the last accepted version', async () => {
  const good = revision;
  const bad = publish(
    { routes: [{ prefix: '/', cluster: 'cluster-b' }], clusters: [{ name: 'cluster-b', port: upstreamB.port }], tag: 'v4-bad' },
    // Past our validation on purpose: a lookahead is not RE2, Envoy rejects the route table.
    [],
  );
  // Replace the route table with one Envoy rejects.
  const badRoutes = resource('fixture-routes', 'envoy.config.route.v3.RouteConfiguration', {
    name: 'fixture-routes',
    virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { safe_regex: { regex: '(?=x).*' } }, route: { cluster: 'cluster-b' } }] }],
  });
  for (const [group, port] of [[`${GROUP}-sotw`, sotwPort], [`${GROUP}-delta`, deltaPort]] as const) {
    const resources = fixtureResources({ routes: [{ prefix: '/', cluster: 'cluster-b' }], clusters: [{ name: 'cluster-b', port: upstreamB.port }], listenerPort: port })
      .filter((r) => r.typeUrl !== TYPE.route);
    cache.setSnapshot(group, makeSnapshot(bad, [...resources, badRoutes]));
  }
  for (const nodeId of ['sotw-1', 'delta-1']) {
    await sotw.waitFor(() => registry.list().find((n) => n.nodeId === nodeId)?.lastNack?.revision === bad, 5_000, `${nodeId} NACK recorded`);
    const nack = registry.list().find((n) => n.nodeId === nodeId)!.lastNack!;
    assert.equal(nack.typeUrl, TYPE.route);
    assert.match(nack.message, /regex|RE2|invalid/i);
  }
  // Traffic is unaffected: still the last good config.
  await serves(sotw, sotwPort, { tag: 'v3', upstream: 'b' });
  await serves(delta, deltaPort, { tag: 'v3', upstream: 'b' });
  // Not re-sent: the rejection counter stays at one.
  const rejected = async (envoy: EnvoyHandle) =>
    Object.entries(await envoy.stats('rds')).filter(([k]) => k.endsWith('update_rejected')).reduce((n, [, v]) => n + v, 0);
  const firstSotw = await rejected(sotw);
  const firstDelta = await rejected(delta);
  assert.equal(firstSotw, 1);
  assert.equal(firstDelta, 1);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.equal(await rejected(sotw), 1);
  assert.equal(await rejected(delta), 1);
  assert.equal(registry.revisionTally(bad).rejected, 2);

  // While sotw-1 (which rejected it) is connected, a newcomer would get the last accepted snapshot.
  assert.equal(cache.servable(`${GROUP}-sotw`)?.revision, good);
  // sotw-1 leaves (freeing the listener port; its verdicts go with it, see
  // xds/cache.ts) and a new Envoy joins the same group: it may be offered the
  // newest snapshot once, and after rejecting it serves the last accepted one.
  await sotw.stop();
  const late = await startEnvoy({ adsPort, nodeId: 'late-1', nodeCluster: `${GROUP}-sotw` });
  started.push(late);
  await serves(late, sotwPort, { tag: 'v3', upstream: 'b' });
  await late.waitFor(() => registry.list().find((n) => n.nodeId === 'late-1')?.syncedRevision === good, 5_000, 'late-1 synced');
  assert.ok(await rejected(late) <= 1, 'no NACK loop');
  sotw = late;
});

test('restarting the xDS server under load: Envoys keep serving and resync by themselves', async () => {
  const load = startLoad({ port: sotwPort, requests: 2_000, concurrency: 4 });
  const loadDelta = startLoad({ port: deltaPort, requests: 2_000, concurrency: 4 });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await server.close();
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Config changed while the control plane was away.
  publish({ routes: [{ prefix: '/', cluster: 'cluster-a' }], clusters: [{ name: 'cluster-a', port: upstreamA.port }], tag: 'v5' });
  await startServer(adsPort);
  const [resultSotw, resultDelta] = await Promise.all([load.result, loadDelta.result]);
  for (const [name, result] of [["sotw", resultSotw], ["delta", resultDelta]] as const) assert.equal(result.failed, 0, `${name} failures: ${JSON.stringify([...result.failures])}`);
  await serves(sotw, sotwPort, { tag: 'v5', upstream: 'a' });
  await serves(delta, deltaPort, { tag: 'v5', upstream: 'a' });
});
