// The request path as users run it: the control plane process (main.ts) runs the
// authz and rate-limit services in-process and points every Envoy at them. What
// the admin API writes (consumers, API keys, rate-limit policies) takes effect on
// the revision that carries it, through a real Envoy to a real upstream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle;
let upstream: HttpUpstream;

before(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ databaseUrl: db.url });
  upstream = await startHttpUpstream({ name: 'api' });
  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'rp-1', nodeCluster: 'default' });
  const writes: Array<[string, unknown]> = [
    ['/v1/upstreams', { name: 'api', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    ['/v1/consumers', { name: 'acme' }],
    ['/v1/routes', { name: 'open', match: { path: { prefix: '/open' } }, action: { upstream: 'api' } }],
    ['/v1/routes', { name: 'keyed', match: { path: { prefix: '/keyed' } }, action: { upstream: 'api' }, auth: { mode: 'api_key' } }],
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
  await db?.drop();
  await stopTestPostgres();
});

/** Polls until `check` holds (bounded: 10 s); the fleet applies in milliseconds, a busy CI machine is slower. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(20);
  }
  throw new Error(`timed out: ${what}\n${cp.output().slice(-2000)}`);
}

const get = (path: string, headers: Record<string, string> = {}) => fetchVia(cp.gatewayPort, path, { headers, timeoutMs: 2_000 });

test('an API key created through the admin API opens an api_key route, and fails from the revision that deletes it', async () => {
  await until(async () => (await get('/open')).status === 200, 'open route serves');
  assert.equal((await get('/keyed')).status, 401, 'no key: 401 from the in-process authz service (not the 503 of a missing service)');

  const created = await cp.api('POST', '/v1/credentials?wait=applied', { name: 'acme-key', consumer: 'acme', kind: 'api_key' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const key = String((created.body as { key: string }).key);
  await until(async () => (await get('/keyed', { 'x-api-key': key })).status === 200, 'key accepted');
  const echoed = JSON.parse((await get('/keyed', { 'x-api-key': key, 'x-sluice-consumer': 'spoofed' })).body) as { headers: Record<string, string> };
  assert.equal(echoed.headers['x-sluice-consumer'], 'acme', 'the upstream is told who called, never what the client claimed');
  assert.equal(echoed.headers['x-api-key'], undefined, 'the credential does not reach the upstream');

  const deleted = await cp.api('DELETE', '/v1/credentials/acme-key?wait=applied');
  assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
  assert.equal((await get('/keyed', { 'x-api-key': key })).status, 401, 'a deleted key fails once its revision is applied');
  assert.ok(!cp.output().includes(key), 'the key never appears in the control plane log');
});

test('a rate-limit policy created through the admin API limits the route across requests', async () => {
  const policy = await cp.api('POST', '/v1/rate-limit-policies', { name: 'three-per-minute', key: ['route'], limit: { requests: 3, per: 'minute' } });
  assert.equal(policy.status, 201, JSON.stringify(policy.body));
  const route = await cp.api('POST', '/v1/routes?wait=applied', {
    name: 'limited',
    match: { path: { prefix: '/limited' } },
    action: { upstream: 'api' },
    rate_limits: ['three-per-minute'],
  });
  assert.equal(route.status, 201, JSON.stringify(route.body));
  await until(async () => (await get('/limited')).status !== 404, 'limited route live');
  // The poll above may itself have used one of the three.
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await get('/limited')).status);
  const admitted = statuses.filter((s) => s === 200).length;
  assert.ok(admitted <= 3, `at most 3 admitted in the minute: ${statuses.join(',')}`);
  assert.ok(statuses.includes(429), `over the limit answers 429: ${statuses.join(',')}`);
});
