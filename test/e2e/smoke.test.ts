// End to end, without Sluice's own xDS server: our encoders -> a minimal ADS
// server -> a real Envoy -> a real upstream. If Envoy accepts and serves this,
// the proto layer and the bootstrap are right.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { adsBootstrap } from '../../envoy/bootstrap.ts';
import {
  packAny, typeUrl,
  type Cluster, type ClusterLoadAssignment, type HttpConnectionManager, type Listener, type RouteConfiguration,
} from '../../control-plane/src/proto/codec.ts';
import { ENVOY_BIN, startEnvoy, type ConfigDump, type EnvoyHandle } from '../helpers/envoy.ts';
import { startMinimalAds, type MinimalAds } from '../helpers/minimal-ads.ts';
import { freePort } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type EchoBody, type HttpUpstream } from '../helpers/upstream.ts';

const LDS = typeUrl('envoy.config.listener.v3.Listener');
const RDS = typeUrl('envoy.config.route.v3.RouteConfiguration');
const CDS = typeUrl('envoy.config.cluster.v3.Cluster');
const EDS = typeUrl('envoy.config.endpoint.v3.ClusterLoadAssignment');
const viaAds = { ads: {}, resource_api_version: 'V3' } as const;

function listener(port: number): Listener {
  const hcm: HttpConnectionManager = {
    stat_prefix: 'smoke',
    rds: { route_config_name: 'smoke-routes', config_source: viaAds },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}) }],
  };
  return {
    name: 'smoke-listener',
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [{
      filters: [{
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', hcm),
      }],
    }],
  };
}

function routes(responseTag: string): RouteConfiguration {
  return {
    name: 'smoke-routes',
    virtual_hosts: [{
      name: 'all',
      domains: ['*'],
      routes: [{ match: { prefix: '/' }, route: { cluster: 'echo' } }],
      response_headers_to_add: [{ header: { key: 'x-smoke', value: responseTag }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    }],
  };
}

const cluster: Cluster = {
  name: 'echo',
  type: 'EDS',
  connect_timeout: { seconds: 1 },
  eds_cluster_config: { eds_config: viaAds },
};

function endpoints(port: number): ClusterLoadAssignment {
  return {
    cluster_name: 'echo',
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

function dumpOf(dump: ConfigDump, kind: string): Record<string, unknown> {
  const found = dump.configs.find((c) => c['@type'] === `type.googleapis.com/envoy.admin.v3.${kind}`);
  assert.ok(found, `config_dump has no ${kind}`);
  return found;
}

let upstream: HttpUpstream;
let ads: MinimalAds;
let envoy: EnvoyHandle;
let port: number;

before(async () => {
  upstream = await startHttpUpstream({ name: 'echo-1' });
  ads = await startMinimalAds();
  port = await freePort();
  ads.set(CDS, 'c1', [packAny('envoy.config.cluster.v3.Cluster', cluster)]);
  ads.set(EDS, 'e1', [packAny('envoy.config.endpoint.v3.ClusterLoadAssignment', endpoints(upstream.port))]);
  ads.set(LDS, 'l1', [packAny('envoy.config.listener.v3.Listener', listener(port))]);
  ads.set(RDS, 'r1', [packAny('envoy.config.route.v3.RouteConfiguration', routes('r1'))]);
  envoy = await startEnvoy({ adsPort: ads.port, nodeId: 'smoke-node' });
});

after(async () => {
  await envoy?.stop();
  await ads?.close();
  await upstream?.close();
});

test('Envoy accepts our resources and proxies to the upstream', async () => {
  await envoy.waitReady();
  assert.equal(await envoy.listenerPort('smoke-listener'), port);
  // Ready means listeners are warm; the route still has to be there.
  await envoy.waitFor(async () => (await fetchVia(port, '/hello')).status === 200, 10_000, 'a 200 through the listener');

  const res = await fetchVia(port, '/hello?x=1', { headers: { 'x-test': 'smoke' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-upstream'], 'echo-1');
  assert.equal(res.headers['x-smoke'], 'r1');
  const body = JSON.parse(res.body) as EchoBody;
  assert.equal(body.upstream, 'echo-1');
  assert.equal(body.method, 'GET');
  assert.equal(body.path, '/hello?x=1');
  assert.equal(body.headers['x-test'], 'smoke');

  const status = await fetchVia(port, '/status/418');
  assert.equal(status.status, 418);
  assert.deepEqual(ads.nacks(), []);
});

test('config_dump shows the versions we sent', async () => {
  const dump = await envoy.configDump();
  const listeners = dumpOf(dump, 'ListenersConfigDump').dynamic_listeners as Array<{ name: string; active_state?: { version_info?: string } }>;
  assert.equal(listeners.find((l) => l.name === 'smoke-listener')?.active_state?.version_info, 'l1');
  const routeConfigs = dumpOf(dump, 'RoutesConfigDump').dynamic_route_configs as Array<{ version_info?: string }>;
  assert.equal(routeConfigs[0]?.version_info, 'r1');
  const clusters = dumpOf(dump, 'ClustersConfigDump').dynamic_active_clusters as Array<{ version_info?: string; cluster?: { name?: string } }>;
  assert.equal(clusters.find((c) => c.cluster?.name === 'echo')?.version_info, 'c1');
  for (const [type, version] of [[LDS, 'l1'], [RDS, 'r1'], [CDS, 'c1'], [EDS, 'e1']] as const) {
    assert.ok(ads.acked(type, version), `Envoy ACKed ${type} ${version}`);
  }
});

test('a pushed route update takes effect without restart', async () => {
  ads.set(RDS, 'r2', [packAny('envoy.config.route.v3.RouteConfiguration', routes('r2'))]);
  await envoy.waitFor(async () => (await fetchVia(port, '/')).headers['x-smoke'] === 'r2', 10_000, 'route version r2');
  assert.ok(ads.acked(RDS, 'r2'));
  assert.deepEqual(ads.nacks(), []);
});

test('bootstrap variants pass envoy --mode validate (delta, DNS-named control plane)', () => {
  for (const opts of [{ delta: true, adsHost: '127.0.0.1' }, { delta: false, adsHost: 'sluice-xds.sluice.svc.cluster.local' }]) {
    const bootstrap = adsBootstrap({ nodeId: 'validate', nodeCluster: 'edge', adsPort: 18000, adminPort: 0, ...opts });
    const run = spawnSync(ENVOY_BIN, ['--mode', 'validate', '--disable-hot-restart', '-l', 'error', '--config-yaml', JSON.stringify(bootstrap)], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    assert.equal(run.status, 0, `${JSON.stringify(opts)}: ${run.stdout}${run.stderr}`);
  }
});
