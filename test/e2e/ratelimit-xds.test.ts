// Rate-limit config over xDS: the ordinary ADS stream (state of the world) serves
// ratelimit.config.ratelimit.v3.RateLimitConfig to a client that behaves like
// envoyproxy/ratelimit with CONFIG_TYPE=GRPC_XDS_SOTW (node id only, no node
// cluster, a wildcard subscription to that type and nothing else), while a real
// Envoy on the same snapshot syncs as before, never waiting for that client.
// When envoyproxy/ratelimit itself is built (bench/setup.sh), it is run against
// the same server as the final judge of wire compatibility.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '../../control-plane/src/config/env.ts';
import type { RateLimitPeriod, RateLimitPolicyInput } from '../../control-plane/src/model/index.ts';
import { decode, type RateLimitResponse } from '../../control-plane/src/proto/codec.ts';
import { RATE_LIMIT_SERVICE_DEFINITION } from '../../control-plane/src/ratelimit/client.ts';
import { translate } from '../../control-plane/src/translate/index.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { TYPE } from '../../control-plane/src/xds/resources.ts';
import { AdsServer } from '../../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../../control-plane/src/xds/snapshot.ts';
import { ADS_SERVICE, type SotwRequest, type SotwResponse } from '../../control-plane/src/xds/wire.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { parseTestState } from '../helpers/gateway.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

const DOMAIN = 'sluice';
const ENVOY_ID = 'rl-xds-envoy';

let cache: SnapshotCache;
let registry: NodeRegistry;
let server: AdsServer;
let adsPort: number;
let envoy: EnvoyHandle;
let upstream: HttpUpstream;
let listenerPort: number;

function policies(perIp: number, per: RateLimitPeriod): RateLimitPolicyInput[] {
  return [
    { name: 'per-ip', key: ['client_ip'], limit: { requests: perIp, per } },
    { name: 'tenant', key: ['route', { header: 'x-tenant' }], limit: { requests: 5, per: 'second' }, burst: 2, scope: 'gateway' },
  ];
}

/** What a RateLimitConfig decoded from the wire should hold for policies(perIp). */
function expectedConfig(perIp: number) {
  const tenant = { unit: 'SECOND', requests_per_unit: 7 };
  return {
    name: DOMAIN,
    domain: DOMAIN,
    descriptors: [
      { key: 'sluice_policy', value: 'per-ip', descriptors: [{ key: 'remote_address', rate_limit: { unit: 'MINUTE', requests_per_unit: perIp } }] },
      { key: 'sluice_policy', value: 'tenant', descriptors: [{ key: 'route', rate_limit: tenant, descriptors: [{ key: 'header:x-tenant', rate_limit: tenant }] }] },
    ],
  };
}

/** Translates for the Envoy and publishes to the default group, as the publisher does. */
function publish(revision: number, perIp: number, per: RateLimitPeriod = 'minute'): void {
  const state = parseTestState({
    revision,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    rate_limit_policies: policies(perIp, per),
    routes: [{ name: 'api', match: { path: { prefix: '/' } }, action: { upstream: 'echo' }, rate_limits: ['per-ip'] }],
  });
  const r = translate(state, {
    listenerPort,
    listenerAddress: '127.0.0.1',
    ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: 1, domain: DOMAIN },
  });
  cache.setSnapshot(SnapshotCache.DEFAULT_GROUP, makeSnapshot(revision, [...r.clusters, ...r.endpoints, ...r.listeners, ...r.routes, ...r.ratelimitConfigs]));
}

function node(nodeId: string) {
  const found = registry.list().find((n) => n.nodeId === nodeId);
  assert.ok(found, `${nodeId} registered`);
  return found;
}

async function until(what: string, predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!predicate()) {
    assert.ok(Date.now() < deadline, `${what}: not within 15 s`);
    await sleep(10);
  }
}

/** A raw SotW client shaped like envoyproxy/ratelimit's: node id only, one type, no names. */
class ConfigSubscriber {
  readonly responses: SotwResponse[] = [];
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<SotwRequest, SotwResponse>;
  private waiting: Array<() => void> = [];

  constructor(readonly nodeId: string) {
    this.client = new grpc.Client(`127.0.0.1:${adsPort}`, grpc.credentials.createInsecure());
    const method = ADS_SERVICE.StreamAggregatedResources;
    this.call = this.client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
    this.call.on('data', (response: SotwResponse) => {
      this.responses.push(response);
      for (const wake of this.waiting.splice(0)) wake();
    });
    this.call.on('error', () => {});
    this.call.write({ node: { id: nodeId }, type_url: TYPE.rateLimitConfig, resource_names: [], version_info: '' });
  }

  /** Waits for the response after the first `seen` ones. */
  async response(seen: number): Promise<SotwResponse> {
    const deadline = Date.now() + 15_000;
    while (this.responses.length <= seen) {
      assert.ok(Date.now() < deadline, `${this.nodeId}: no response ${seen + 1} within 15 s`);
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.responses[seen]!;
  }

  ack(response: SotwResponse): void {
    this.call.write({ node: { id: this.nodeId }, type_url: TYPE.rateLimitConfig, version_info: response.version_info, response_nonce: response.nonce, resource_names: [] });
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

function configsIn(response: SotwResponse): unknown[] {
  assert.equal(response.type_url, TYPE.rateLimitConfig);
  return response.resources.map((any) => {
    assert.equal(any.type_url, TYPE.rateLimitConfig);
    return decode('ratelimit.config.ratelimit.v3.RateLimitConfig', any.value);
  });
}

before(async () => {
  upstream = await startHttpUpstream({ name: 'echo' });
  cache = new SnapshotCache();
  registry = new NodeRegistry();
  server = new AdsServer({ cache, registry });
  adsPort = await server.listen('127.0.0.1', 0);
  listenerPort = await freePort();
  publish(1, 100);
  // Its own node cluster: falls back to the default group, like the fleet's Envoys.
  envoy = await startEnvoy({ adsPort, nodeId: ENVOY_ID, nodeCluster: 'edge' });
  await until('the Envoy syncs revision 1', () => registry.list().some((n) => n.nodeId === ENVOY_ID && n.syncedRevision === 1));
});

after(async () => {
  await envoy?.stop();
  await server?.close();
  await upstream?.close();
});

describe('RateLimitConfig on the ADS stream', () => {
  let subscriber: ConfigSubscriber;
  after(() => subscriber?.close());

  test('a client like envoyproxy/ratelimit (node id only, wildcard) gets one config per domain, matching the policies, and its ACK is recorded', async () => {
    subscriber = new ConfigSubscriber('ratelimit-1');
    const first = await subscriber.response(0);
    assert.ok(first.version_info.length > 0);
    assert.deepEqual(configsIn(first), [expectedConfig(100)]);
    subscriber.ack(first);
    await until('the ACK is recorded and the client is in sync', () => node('ratelimit-1').acked[TYPE.rateLimitConfig] === first.version_info && node('ratelimit-1').syncedRevision === 1);
    assert.equal(node('ratelimit-1').group, '*', 'no node cluster: the default group');
    assert.equal(node('ratelimit-1').lastNack, undefined);
    // The Envoy never asked for the type and was never sent it.
    assert.equal(node(ENVOY_ID).acked[TYPE.rateLimitConfig], undefined);
    assert.equal(node(ENVOY_ID).syncedRevision, 1);
  });

  test('a policy change gives a new version with the new limit; the Envoy syncs the revision without waiting for the config client\'s ACK', async () => {
    const seen = subscriber.responses.length;
    const before = subscriber.responses.at(-1)!.version_info;
    publish(2, 40);
    const next = await subscriber.response(seen);
    assert.notEqual(next.version_info, before);
    assert.deepEqual(configsIn(next), [expectedConfig(40)]);
    // Not ACKed yet: the Envoy is in sync at revision 2 regardless.
    await until('the Envoy syncs revision 2', () => node(ENVOY_ID).syncedRevision === 2);
    assert.equal(node('ratelimit-1').syncedRevision, 1);
    subscriber.ack(next);
    await until('the client holds revision 2 after its ACK', () => node('ratelimit-1').syncedRevision === 2);
    // Nothing more is due for it.
    await sleep(100);
    assert.equal(subscriber.responses.length, seen + 1);
  });

  test('a client that does not ACK holds nobody up, and gets the newest config once it does', async () => {
    const silent = new ConfigSubscriber('ratelimit-silent');
    try {
      const first = await silent.response(0);
      publish(3, 41);
      await until('the Envoy syncs revision 3', () => node(ENVOY_ID).syncedRevision === 3);
      // State of the world: one response in flight per type, so nothing more until the ACK.
      assert.equal(silent.responses.length, 1);
      silent.ack(first);
      const pushed = await silent.response(1);
      assert.deepEqual(configsIn(pushed), [expectedConfig(41)]);
    } finally {
      silent.close();
    }
  });
});

// envoyproxy/ratelimit itself, when bench/setup.sh has built it: it loads the
// served config (GRPC_XDS_SOTW) and enforces it, which no test written here can
// prove about the wire format as well.
const RATELIMIT_BIN = path.join(repoRoot, 'bench/.tools/bin/ratelimit');

describe('envoyproxy/ratelimit as the subscriber', { skip: existsSync(RATELIMIT_BIN) ? false : `not built (${RATELIMIT_BIN}; run bench/setup.sh)` }, () => {
  let redis: TestRedis;
  let child: ChildProcess | undefined;
  let root: string;
  let stderr = '';

  before(async () => {
    redis = await startRedis();
    root = mkdtempSync(path.join(os.tmpdir(), 'sluice-rl-xds-'));
  });

  after(async () => {
    child?.kill('SIGKILL');
    await redis?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('it loads the served config over ADS and enforces its limits', async () => {
    publish(4, 3, 'day');
    const grpcPort = await freePort();
    child = spawn(RATELIMIT_BIN, [], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        PATH: process.env.PATH,
        CONFIG_TYPE: 'GRPC_XDS_SOTW',
        CONFIG_GRPC_XDS_SERVER_URL: `127.0.0.1:${adsPort}`,
        CONFIG_GRPC_XDS_NODE_ID: 'envoyproxy-ratelimit',
        CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL: '100ms',
        GRPC_HOST: '127.0.0.1',
        GRPC_PORT: String(grpcPort),
        PORT: String(await freePort()),
        DEBUG_HOST: '127.0.0.1',
        DEBUG_PORT: String(await freePort()),
        USE_STATSD: 'false',
        LOG_LEVEL: 'warn',
        BACKEND_TYPE: 'redis',
        REDIS_SOCKET_TYPE: 'tcp',
        REDIS_URL: `127.0.0.1:${redis.port}`,
      },
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4_000);
    });
    await until('envoyproxy/ratelimit ACKs the config', () => registry.list().some((n) => n.nodeId === 'envoyproxy-ratelimit' && n.syncedRevision === 4));
    assert.equal(node('envoyproxy-ratelimit').lastNack, undefined, stderr);

    const Client = grpc.makeGenericClientConstructor(RATE_LIMIT_SERVICE_DEFINITION, 'RateLimitService');
    const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const ask = (ip: string) =>
      new Promise<RateLimitResponse>((resolve, reject) => {
        const request = { domain: DOMAIN, descriptors: [{ entries: [{ key: 'sluice_policy', value: 'per-ip' }, { key: 'remote_address', value: ip }] }] };
        const method = RATE_LIMIT_SERVICE_DEFINITION.ShouldRateLimit!;
        client.makeUnaryRequest(
          method.path,
          method.requestSerialize,
          method.responseDeserialize,
          request,
          { deadline: Date.now() + 5_000 },
          (err: grpc.ServiceError | null, value?: RateLimitResponse) => (err ? reject(err) : resolve(value!)),
        );
      });
    try {
      // Its gRPC port opens a moment after start: poll the first call.
      let first: RateLimitResponse | undefined;
      for (let attempt = 0; attempt < 150 && !first; attempt += 1) first = await ask('10.9.9.9').catch(() => sleep(100).then(() => undefined));
      assert.ok(first, `envoyproxy/ratelimit answered\n${stderr}`);
      const limit = first.statuses?.[0]?.current_limit;
      assert.equal(limit?.requests_per_unit, 3, 'the limit came from the served config');
      assert.equal(limit?.unit, 'DAY');
      const codes = [first.overall_code];
      for (let i = 0; i < 3; i += 1) codes.push((await ask('10.9.9.9')).overall_code);
      // Its windows are fixed: a day boundary between these four calls (well under a
      // second apart) would reset the count; that chance is under 1 in 10,000 (< 1e-5).
      assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    } finally {
      client.close();
    }
  });
});
