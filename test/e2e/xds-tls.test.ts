// xDS over mutual TLS: who may connect, which node ids a certificate may claim,
// and the transport bounds every client meets. Certificates come from
// scripts/dev-certs.sh at test start; one real Envoy and raw grpc-js clients
// (the ADS method definitions from xds/wire.ts) talk to the real AdsServer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '../../control-plane/src/config/env.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { TYPE } from '../../control-plane/src/xds/resources.ts';
import { AdsServer, DEFAULT_ADS_LIMITS } from '../../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../../control-plane/src/xds/snapshot.ts';
import { ADS_SERVICE, type SotwRequest, type SotwResponse } from '../../control-plane/src/xds/wire.ts';
import { ENVOY_BIN, startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { freePort } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';
import { fixtureResources } from '../helpers/xds-fixtures.ts';

const GROUP = 'tls-edge';
let dir: string;
let good: string;
let other: string;
let cache: SnapshotCache;
let registry: NodeRegistry;
let server: AdsServer;
let adsPort: number;
let upstream: HttpUpstream;
let envoy: EnvoyHandle | undefined;
let listenerPort: number;
let revision = 0;
const clients: grpc.Client[] = [];

const file = (folder: string, name: string) => readFileSync(path.join(folder, name));

/** Publishes a revision whose route tags responses with `tag`, to a cluster named after it (so CDS changes too). */
function publish(tag: string): number {
  revision += 1;
  cache.setSnapshot(GROUP, makeSnapshot(revision, fixtureResources({
    listenerPort,
    routes: [{ prefix: '/', cluster: `upstream-${tag}` }],
    clusters: [{ name: `upstream-${tag}`, port: upstream.port }],
    tag,
  })));
  return revision;
}

/** A raw ADS client; `cert` names a node certificate in `folder`, or none for a client without one. */
function adsClient(folder: string, cert?: string): grpc.Client {
  const credentials = grpc.credentials.createSsl(
    file(good, 'ca.crt'),
    cert ? file(folder, `nodes/${cert}.key`) : null,
    cert ? file(folder, `nodes/${cert}.crt`) : null,
  );
  // Own connection per client: certificates are per connection. The server is
  // checked by its DNS SAN (an IP in SNI is not allowed by RFC 6066).
  const client = new grpc.Client(`127.0.0.1:${adsPort}`, credentials, {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.ssl_target_name_override': 'localhost',
  });
  clients.push(client);
  return client;
}

/** Fails instead of hanging when what must happen does not (a bound, not a speed check). */
function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after 15 s`)), 15_000);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

const ended = (stream: RawStream) => bounded(stream.status, 'call end');

interface RawStream {
  call: grpc.ClientDuplexStream<SotwRequest, SotwResponse>;
  responses: SotwResponse[];
  /** Resolves with the call's final status. */
  status: Promise<grpc.StatusObject>;
  /** Resolves with the next response (or rejects when the call ends first). */
  next(): Promise<SotwResponse>;
}

function openStream(client: grpc.Client): RawStream {
  const method = ADS_SERVICE.StreamAggregatedResources;
  const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
  const responses: SotwResponse[] = [];
  let waiting: Array<(r: SotwResponse) => void> = [];
  call.on('data', (r: SotwResponse) => {
    responses.push(r);
    for (const resolve of waiting) resolve(r);
    waiting = [];
  });
  call.on('error', () => {}); // the status promise carries it
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  const next = () =>
    bounded(Promise.race([
      new Promise<SotwResponse>((resolve) => waiting.push(resolve)),
      status.then((s) => Promise.reject(new Error(`call ended: ${grpc.status[s.code]} ${s.details}`))),
    ]), 'next response');
  return { call, responses, status, next };
}

const clusterRequest = (nodeId: string, extra: Partial<SotwRequest> = {}): SotwRequest => ({
  node: { id: nodeId, cluster: GROUP },
  type_url: TYPE.cluster,
  ...extra,
});

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-xds-tls-'));
  good = path.join(dir, 'good');
  other = path.join(dir, 'other');
  const script = path.join(repoRoot, 'scripts/dev-certs.sh');
  execFileSync('bash', [script, '--out', good, '--server-name', 'localhost', 'node-a', 'node-b', 'envoy-tls', 'envoy-compose'], { stdio: 'ignore' });
  // Same names, another CA.
  execFileSync('bash', [script, '--out', other, '--server-name', 'localhost', 'node-a'], { stdio: 'ignore' });

  cache = new SnapshotCache();
  registry = new NodeRegistry();
  server = new AdsServer({
    cache,
    registry,
    tls: { cert: file(good, 'server.crt'), key: file(good, 'server.key'), clientCa: file(good, 'ca.crt') },
  });
  adsPort = await server.listen('127.0.0.1', 0);
  upstream = await startHttpUpstream({ name: 'tls' });
  listenerPort = await freePort();
  publish('v1');
});

after(async () => {
  for (const client of clients) client.close();
  await envoy?.stop();
  await server?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('an Envoy with a client certificate for its node id gets config over mutual TLS and serves', async () => {
  envoy = await startEnvoy({
    adsPort,
    nodeId: 'envoy-tls',
    nodeCluster: GROUP,
    tls: {
      certFile: path.join(good, 'nodes/envoy-tls.crt'),
      keyFile: path.join(good, 'nodes/envoy-tls.key'),
      caFile: path.join(good, 'ca.crt'),
      serverName: 'localhost', // SNI and the DNS SAN check, as deploy/ uses them
    },
  });
  await envoy.waitReady();
  await envoy.waitFor(async () => (await fetchVia(listenerPort, '/', { timeoutMs: 1_000 })).status === 200, 10_000, 'listener serving');
  const node = registry.list().find((n) => n.nodeId === 'envoy-tls');
  assert.equal(node?.authenticated, true);
});

// With TLS 1.3 the client may think the handshake done before the server has
// checked its certificate; the call then dies with the connection, which
// grpc-js reports as UNAVAILABLE or (for a TLS alert) INTERNAL. Either way no
// call ever reaches the ADS handler.
const CONNECTION_FAILED = [grpc.status.UNAVAILABLE, grpc.status.INTERNAL];

test('a client without a certificate, or with one from another CA, cannot connect', async () => {
  const streamsBefore = server.streams.size;
  for (const client of [adsClient(good), adsClient(other, 'node-a')]) {
    const stream = openStream(client);
    stream.call.write(clusterRequest('node-a'));
    const status = await ended(stream);
    assert.ok(CONNECTION_FAILED.includes(status.code), `${grpc.status[status.code]} ${status.details}`);
    assert.equal(stream.responses.length, 0);
  }
  assert.equal(server.streams.size, streamsBefore, 'no ADS stream was opened');
  // Plaintext is not spoken on a TLS port either.
  const plain = new grpc.Client(`127.0.0.1:${adsPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  clients.push(plain);
  const stream = openStream(plain);
  stream.call.write(clusterRequest('node-a'));
  assert.ok(CONNECTION_FAILED.includes((await ended(stream)).code));
  assert.equal(server.streams.size, streamsBefore, 'no ADS stream was opened');
  assert.ok(!registry.list().some((n) => n.nodeId === 'node-a'), 'no refused client registered');
});

test('a certificate for node-a claiming node id node-b is refused and its NACK never counts', async () => {
  const before = registry.list().length;
  const stream = openStream(adsClient(good, 'node-a'));
  // An attacker's best shot: claim another node and NACK in the same breath,
  // with a nonce shaped like the server's.
  stream.call.write(clusterRequest('node-b'));
  stream.call.write(clusterRequest('node-b', { response_nonce: '1-1', error_detail: { code: 3, message: 'rogue NACK' } }));
  const status = await ended(stream);
  assert.equal(status.code, grpc.status.PERMISSION_DENIED, `${status.code} ${status.details}`);
  assert.equal(stream.responses.length, 0, 'a refused stream is sent no config');
  assert.equal(registry.list().length, before, 'a refused stream never registers');
  assert.ok(!registry.list().some((n) => n.nodeId === 'node-b' || n.lastNack !== undefined));
  assert.equal(registry.revisionTally(revision).rejected, 0);

  // The same certificate with its own node id is admitted (the refusal was about the claim).
  const own = openStream(adsClient(good, 'node-a'));
  own.call.write(clusterRequest('node-a'));
  const response = await own.next();
  assert.equal(response.type_url, TYPE.cluster);
  assert.equal(registry.list().find((n) => n.nodeId === 'node-a')?.authenticated, true);
  own.call.end();
  await ended(own);
});

test('an oversize request ends only its own stream', async () => {
  const bystander = openStream(adsClient(good, 'node-b'));
  bystander.call.write(clusterRequest('node-b'));
  const first = await bystander.next();
  bystander.call.write(clusterRequest('node-b', { response_nonce: first.nonce, version_info: first.version_info }));

  // One message just over the default limit (4 MiB, down from 16 MiB), in a
  // field no per-stream bound looks at, so only the transport limit can stop it.
  const attacker = openStream(adsClient(good, 'node-a'));
  const padding = 'x'.repeat(DEFAULT_ADS_LIMITS.maxReceiveBytes + 1024);
  attacker.call.write(clusterRequest('node-a', { node: { id: 'node-a', cluster: GROUP, user_agent_name: padding } as SotwRequest['node'] }));
  const status = await ended(attacker);
  assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED, `${status.code} ${status.details}`);
  assert.match(status.details, /larger than max/);

  // The bystander's stream still gets the next revision, and the Envoy still follows.
  const pushed = bystander.next();
  publish('v2');
  const update = await pushed;
  assert.notEqual(update.version_info, first.version_info);
  await envoy!.waitFor(async () => (await fetchVia(listenerPort, '/', { timeoutMs: 1_000 })).headers['x-config'] === 'v2', 10_000, 'v2 served');
  bystander.call.end();
  await ended(bystander);
});

test('the port advertises its stream bound and closes a connection that stays idle', async () => {
  // A second, plaintext server with a short idle limit: the bound is transport-wide, TLS or not.
  const idleServer = new AdsServer({ cache, registry: new NodeRegistry(), limits: { maxIdleMs: 500 } });
  const port = await idleServer.listen('127.0.0.1', 0);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    await bounded(once(session, 'remoteSettings'), 'server SETTINGS');
    assert.equal(session.remoteSettings.maxConcurrentStreams, DEFAULT_ADS_LIMITS.maxStreamsPerConnection);
    // A connection that opens no stream is closed by the server (GOAWAY), not kept forever.
    await bounded(once(session, 'close'), 'idle connection closed');
  } finally {
    session.destroy();
    await idleServer.close();
  }
});

test("the shipped deploy/envoy-bootstrap.yaml passes Envoy's own validation, certificates in place", () => {
  // The compose file mounts the certificates at /etc/sluice/certs; point those paths at ours.
  const mounted: Record<string, string> = {
    '/etc/sluice/certs/node.crt': path.join(good, 'nodes/envoy-compose.crt'),
    '/etc/sluice/certs/node.key': path.join(good, 'nodes/envoy-compose.key'),
    '/etc/sluice/certs/ca.crt': path.join(good, 'ca.crt'),
  };
  let yaml = readFileSync(path.join(repoRoot, 'deploy/envoy-bootstrap.yaml'), 'utf8');
  for (const [from, to] of Object.entries(mounted)) {
    assert.ok(yaml.includes(from), `bootstrap names ${from}`);
    yaml = yaml.replaceAll(from, to);
  }
  const file = path.join(dir, 'deploy-bootstrap.yaml');
  writeFileSync(file, yaml);
  const out = execFileSync(ENVOY_BIN, ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'error'], { encoding: 'utf8' });
  assert.match(out, /OK/);
});
