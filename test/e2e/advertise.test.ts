// AUTHZ_ADVERTISE_* / RATELIMIT_ADVERTISE_*: Envoys dial the address the
// control plane advertises (in Kubernetes, a Service over every replica), not
// the one its services bind. Here the "Service" is a TCP relay on another
// loopback port: checks and rate-limit decisions only succeed if Envoy went
// through it.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

/** A TCP relay from a loopback port to `targetPort`, counting the connections it carried. */
async function startRelay(targetPort: number): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections += 1;
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle;
let upstream: HttpUpstream;
let authzRelay: Awaited<ReturnType<typeof startRelay>>;
let ratelimitRelay: Awaited<ReturnType<typeof startRelay>>;

before(async () => {
  db = await createTestDatabase();
  const [authzPort, ratelimitPort] = [await freePort(), await freePort()];
  authzRelay = await startRelay(authzPort);
  ratelimitRelay = await startRelay(ratelimitPort);
  cp = await startControlPlane({
    databaseUrl: db.url,
    env: {
      AUTHZ_PORT: String(authzPort),
      AUTHZ_ADVERTISE_HOST: '127.0.0.1',
      AUTHZ_ADVERTISE_PORT: String(authzRelay.port),
      RATELIMIT_PORT: String(ratelimitPort),
      RATELIMIT_ADVERTISE_PORT: String(ratelimitRelay.port),
    },
  });
  upstream = await startHttpUpstream({ name: 'api' });
  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'advertise-1', nodeCluster: 'default' });
  const writes: Array<[string, unknown]> = [
    ['/v1/upstreams', { name: 'api', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    ['/v1/consumers', { name: 'acme' }],
    ['/v1/rate-limit-policies', { name: 'per-consumer', key: ['consumer'], limit: { requests: 2, per: 'minute' }, on_error: 'deny' }],
    ['/v1/routes?wait=applied', { name: 'keyed', match: { path: { prefix: '/keyed' } }, action: { upstream: 'api' }, auth: { mode: 'api_key' }, rate_limits: ['per-consumer'] }],
  ];
  for (const [url, body] of writes) {
    const res = await cp.api('POST', url, body);
    assert.equal(res.status, 201, `${url}: ${JSON.stringify(res.body)}`);
  }
});

after(async () => {
  await envoy?.stop();
  await cp?.stop();
  await upstream?.close();
  await authzRelay?.close();
  await ratelimitRelay?.close();
  await db?.drop();
  await stopTestPostgres();
});

test('Envoy reaches the authz and rate-limit services at their advertised addresses', async () => {
  const created = await cp.api('POST', '/v1/credentials?wait=applied', { name: 'acme-key', consumer: 'acme', kind: 'api_key' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const key = String((created.body as { key: string }).key);
  const get = () => fetchVia(cp.gatewayPort, '/keyed', { headers: { 'x-api-key': key }, timeoutMs: 2_000 });
  // Bounded wait for the key's revision to reach the authz service (10 s).
  let first = await get();
  for (let i = 0; i < 500 && first.status !== 200; i++) {
    await sleep(20);
    first = await get();
  }
  assert.equal(first.status, 200, 'the check passed: authz answered through the relay (fail closed otherwise)');
  assert.equal((await get()).status, 200);
  // The third request in the minute is over the limit: the rate-limit service
  // counted, through its relay (on_error deny would answer 503 if unreachable).
  assert.equal((await get()).status, 429);
  assert.ok(authzRelay.connections() > 0, 'Envoy dialled the advertised authz address');
  assert.ok(ratelimitRelay.connections() > 0, 'Envoy dialled the advertised rate-limit address');
});
