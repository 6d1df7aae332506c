// Sluice's ADS server against an independent xDS client: @grpc/grpc-js-xds
// resolves `xds:///echo.sluice.test` through LDS -> RDS -> CDS -> EDS
// (state-of-the-world over ADS, named subscriptions for every type) and makes a
// real gRPC call to a real gRPC server on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as grpcJsXds from '@grpc/grpc-js-xds';
import { packAny } from '../../control-plane/src/proto/codec.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { ENVOY_TYPES, TYPE, setVersion } from '../../control-plane/src/xds/resources.ts';
import { AdsServer } from '../../control-plane/src/xds/server.ts';
import { makeSnapshot, snapshotSet, type Snapshot } from '../../control-plane/src/xds/snapshot.ts';
import { resource } from '../helpers/xds-fixtures.ts';

const SERVICE = 'echo.sluice.test';
const ROUTES = 'echo-routes';
const CLUSTER = 'echo-cluster';
const NODE_ID = 'grpc-client-1';
const NODE_GROUP = 'grpc-clients';
const SAY_PATH = '/sluice.test.Echo/Say';

interface SayRequest { text: string }
interface SayReply { text: string; from: string }

const serializeJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const deserializeJson = <T>(bytes: Buffer): T => JSON.parse(bytes.toString('utf8')) as T;

/** A unary method defined by hand (no .proto): JSON bodies on the gRPC wire. */
const ECHO_SERVICE: grpc.ServiceDefinition = {
  Say: {
    path: SAY_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: serializeJson,
    requestDeserialize: deserializeJson<SayRequest>,
    responseSerialize: serializeJson,
    responseDeserialize: deserializeJson<SayReply>,
  },
};

const viaAds = { ads: {}, resource_api_version: 'V3' } as const;

/** What grpc-js-xds needs: an API listener, a route table, an EDS cluster, an assignment with a weighted locality. */
function echoResources(upstreamPort: number) {
  return [
    resource(SERVICE, 'envoy.config.listener.v3.Listener', {
      name: SERVICE,
      api_listener: {
        api_listener: packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
          stat_prefix: 'echo',
          rds: { route_config_name: ROUTES, config_source: viaAds },
          http_filters: [{ name: 'router', typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}) }],
        }),
      },
    }),
    resource(ROUTES, 'envoy.config.route.v3.RouteConfiguration', {
      name: ROUTES,
      virtual_hosts: [{
        name: 'echo',
        domains: [SERVICE],
        routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: CLUSTER } }],
      }],
    }),
    resource(CLUSTER, 'envoy.config.cluster.v3.Cluster', {
      name: CLUSTER,
      type: 'EDS',
      lb_policy: 'ROUND_ROBIN',
      connect_timeout: { seconds: 1 },
      eds_cluster_config: { eds_config: viaAds },
    }),
    resource(CLUSTER, 'envoy.config.endpoint.v3.ClusterLoadAssignment', {
      cluster_name: CLUSTER,
      endpoints: [{
        // grpc-js-xds rejects a locality-less entry and skips one without a weight.
        locality: { region: 'test' },
        load_balancing_weight: { value: 1 },
        lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }],
      }],
    }),
  ];
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function eventually(check: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let cache: SnapshotCache;
let registry: NodeRegistry;
let ads: AdsServer;
let upstream: grpc.Server;
let upstreamPort: number;
let client: grpc.Client | undefined;
let snapshot: Snapshot;
const served: SayRequest[] = [];
const warnings: string[] = [];

before(async () => {
  upstream = new grpc.Server();
  upstream.addService(ECHO_SERVICE, {
    Say: (call: grpc.ServerUnaryCall<SayRequest, SayReply>, callback: grpc.sendUnaryData<SayReply>) => {
      served.push(call.request);
      callback(null, { text: call.request.text, from: `echo-upstream:${upstreamPort}` });
    },
  });
  upstreamPort = await new Promise<number>((resolve, reject) =>
    upstream.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  cache = new SnapshotCache();
  registry = new NodeRegistry();
  ads = new AdsServer({
    cache,
    registry,
    log: { info() {}, warn: (msg, fields) => warnings.push(`${msg} ${JSON.stringify(fields)}`) },
  });
  const adsPort = await ads.listen('127.0.0.1', 0);
  snapshot = makeSnapshot(1, echoResources(upstreamPort));
  cache.setSnapshot(NODE_GROUP, snapshot);

  // grpc-js-xds reads the bootstrap once, when the first xds: channel resolves.
  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${adsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: NODE_ID, cluster: NODE_GROUP, locality: {} },
  });
  grpcJsXds.register();
});

after(async () => {
  client?.close();
  await withTimeout(
    new Promise<void>((resolve) => upstream.tryShutdown(() => resolve())),
    2_000,
    'gRPC upstream shutdown',
  ).catch(() => upstream.forceShutdown());
  await ads?.close();
});

test('grpc-js-xds resolves a service through Sluice (LDS -> RDS -> CDS -> EDS) and calls the upstream', async () => {
  client = new grpc.Client(`xds:///${SERVICE}`, grpc.credentials.createInsecure());
  const c = client;
  const reply = await withTimeout(
    new Promise<SayReply>((resolve, reject) => {
      c.makeUnaryRequest<SayRequest, SayReply>(
        SAY_PATH,
        serializeJson,
        deserializeJson<SayReply>,
        { text: 'hello via sluice' },
        { deadline: Date.now() + 8_000 },
        (err, value) => (err || !value ? reject(err ?? new Error('empty reply')) : resolve(value)),
      );
    }),
    10_000,
    'unary call over xds:///',
  ).catch((err: unknown) => {
    throw new Error(
      `call failed: ${(err as Error).message}\nregistry: ${JSON.stringify(registry.list(), null, 2)}\nwarnings: ${warnings.join('\n')}`,
    );
  });

  assert.deepEqual(reply, { text: 'hello via sluice', from: `echo-upstream:${upstreamPort}` });
  assert.deepEqual(served, [{ text: 'hello via sluice' }]);
  assert.deepEqual(warnings, [], 'no NACKs from grpc-js-xds');

  // The client ACKs EDS on the ADS stream while the call goes out on another
  // connection, so give the last ACK a moment to land.
  const expectedAcks = Object.fromEntries([...ENVOY_TYPES].map((type) => [type, setVersion(snapshotSet(snapshot, type))]));
  const grpcNode = () => registry.list().find((n) => n.nodeId === NODE_ID);
  await eventually(
    () => [...ENVOY_TYPES].every((type) => grpcNode()?.acked[type] === expectedAcks[type]),
    3_000,
    () => `registry never showed every type ACKed: ${JSON.stringify(registry.list(), null, 2)}`,
  );
  const node = grpcNode()!;
  assert.equal(node.protocol, 'sotw');
  assert.equal(node.group, NODE_GROUP);
  assert.deepEqual(node.acked, expectedAcks);
  for (const type of [TYPE.listener, TYPE.route, TYPE.cluster, TYPE.endpoint]) {
    assert.match(node.acked[type] ?? '', /^[0-9a-f]{16}$/, `ACKed version for ${type}`);
  }
  assert.equal(node.syncedRevision, 1, 'the client holds revision 1 in full');
  assert.equal(node.lastNack, undefined);
});
