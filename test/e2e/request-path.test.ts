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

test('an API key created through the admin API opens an api_key route, fails from the revision that deletes it, and stays revoked through a rollback', async () => {
  await until(async () => (await get('/open')).status === 200, 'open route serves');
  // The keyed route came in a later revision: wait for it rather than race it.
  await until(async () => (await get('/keyed')).status !== 404, 'keyed route live');
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

  // Rolling back to the revision that held the key restores the credential, not the key.
  const heldKey = Number((created.body as { revision: number }).revision);
  const rolledBack = await cp.api('POST', `/v1/revisions/${heldKey}:rollback?wait=applied`);
  assert.equal(rolledBack.status, 200, JSON.stringify(rolledBack.body));
  assert.deepEqual((rolledBack.body as { keys_not_restored?: string[] }).keys_not_restored, ['acme-key']);
  assert.equal((await cp.api('GET', '/v1/credentials/acme-key')).status, 200, 'the credential is back');
  assert.equal((await get('/keyed', { 'x-api-key': key })).status, 401, 'the revoked key still fails after the rollback');
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

test('limits keyed by consumer × route count each API key\'s consumer separately, and a limit changed through the admin API applies on the next revision', async () => {
  const writes: Array<[string, unknown]> = [
    ['/v1/consumers', { name: 'alpha' }],
    ['/v1/consumers', { name: 'beta' }],
    ['/v1/rate-limit-policies', { name: 'per-consumer', key: ['consumer', 'route'], limit: { requests: 4, per: 'minute' } }],
  ];
  for (const [url, body] of writes) assert.equal((await cp.api('POST', url, body)).status, 201, url);
  const keyOf = async (name: string, consumer: string) => {
    const res = await cp.api('POST', '/v1/credentials', { name, consumer, kind: 'api_key' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return String((res.body as { key: string }).key);
  };
  const alpha = await keyOf('alpha-key', 'alpha');
  const beta = await keyOf('beta-key', 'beta');
  const route = await cp.api('POST', '/v1/routes?wait=applied', {
    name: 'metered',
    match: { path: { prefix: '/metered' } },
    action: { upstream: 'api' },
    auth: { mode: 'api_key' },
    rate_limits: ['per-consumer'],
  });
  assert.equal(route.status, 201, JSON.stringify(route.body));
  await until(async () => (await get('/metered', { 'x-api-key': alpha })).status !== 404, 'metered route live');

  // alpha has used at most one request (the poll); its remaining ones run out at 4.
  const alphaStatuses: number[] = [];
  for (let i = 0; i < 6; i++) alphaStatuses.push((await get('/metered', { 'x-api-key': alpha })).status);
  assert.ok(alphaStatuses.includes(429), `alpha is limited: ${alphaStatuses.join(',')}`);
  assert.ok(alphaStatuses.filter((s) => s === 200).length <= 4, `alpha: at most 4 per minute: ${alphaStatuses.join(',')}`);
  // beta's counter is its own: exactly 4 admitted, then 429 with the headers clients back off by.
  const betaResults = [];
  for (let i = 0; i < 5; i++) betaResults.push(await get('/metered', { 'x-api-key': beta }));
  assert.deepEqual(betaResults.map((r) => r.status), [200, 200, 200, 200, 429], 'beta is counted separately from alpha');
  const limited = betaResults[4]!;
  assert.ok(Number(limited.headers['retry-after']) >= 1, `Retry-After on a 429: ${JSON.stringify(limited.headers)}`);
  assert.equal(limited.headers['x-ratelimit-limit']?.toString().split(',')[0]?.trim(), '4');

  // Raising the limit through the admin API lets beta through on the next revision: no restart anywhere.
  const raised = await cp.api('PATCH', '/v1/rate-limit-policies/per-consumer?wait=applied', { limit: { requests: 50, per: 'minute' } }, { 'content-type': 'application/merge-patch+json' });
  assert.equal(raised.status, 200, JSON.stringify(raised.body));
  await until(async () => (await get('/metered', { 'x-api-key': beta })).status === 200, 'raised limit admits beta again');
});
