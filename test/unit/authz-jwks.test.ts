// The JWKS cache against a real local JWKS server, with the service's clock in
// the test's hands: max-age honoured within bounds, stale keys served while a
// refresh runs behind them, one unknown-kid refetch per cooldown, cached keys
// kept while the endpoint is down.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { errors } from 'jose';
import { DEFAULT_JWKS_SETTINGS, KeysUnavailableError, RemoteJwks, ttlFrom, type JwksSettings } from '../../control-plane/src/authz/jwks.ts';
import { AuthzMetrics } from '../../control-plane/src/authz/metrics.ts';
import { makeSigningKey, startJwksServer, type JwksServer, type SigningKey } from '../helpers/jwks-server.ts';
import { sleep } from '../helpers/net.ts';

const SETTINGS: JwksSettings = { ...DEFAULT_JWKS_SETTINGS, minTtlMs: 30_000, maxTtlMs: 3_600_000, refetchCooldownMs: 30_000 };
const NO_TOKEN = { payload: '', signature: '' };

let key: SigningKey;
let other: SigningKey;
const servers: JwksServer[] = [];
const sources: RemoteJwks[] = [];

before(async () => {
  key = await makeSigningKey('RS256', 'k1');
  other = await makeSigningKey('RS256', 'k2');
});

after(async () => {
  for (const source of sources) source.close();
  await Promise.all(servers.map((s) => s.close()));
});

async function setup(cacheControl = 'max-age=60') {
  const server = await startJwksServer([key.jwk], cacheControl);
  servers.push(server);
  const clock = { ms: 1_000_000 };
  const metrics = new AuthzMetrics();
  const source = new RemoteJwks('p', server.url, SETTINGS, metrics, () => clock.ms);
  sources.push(source);
  return { server, clock, metrics, source };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

test('ttlFrom: max-age within bounds, no-store and no-cache at the minimum, a default without a header', () => {
  assert.equal(ttlFrom(null, SETTINGS), SETTINGS.defaultTtlMs);
  assert.equal(ttlFrom('public, max-age=120', SETTINGS), 120_000);
  assert.equal(ttlFrom('max-age=1', SETTINGS), SETTINGS.minTtlMs);
  assert.equal(ttlFrom('max-age=999999999', SETTINGS), SETTINGS.maxTtlMs);
  assert.equal(ttlFrom('no-store', SETTINGS), SETTINGS.minTtlMs);
  assert.equal(ttlFrom('max-age=60, no-cache', SETTINGS), SETTINGS.minTtlMs);
  assert.equal(ttlFrom('max-age=abc', SETTINGS), SETTINGS.defaultTtlMs);
});

test('a known kid is answered from the cache; after max-age the cached key still answers while a refresh runs', async () => {
  const { server, clock, source } = await setup('max-age=60');
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  assert.equal(server.fetches, 1);
  clock.ms += 59_000;
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  assert.equal(server.fetches, 1, 'fresh within max-age');
  clock.ms += 2_000;
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  await until('background refresh', () => server.fetches === 2);
});

test('an unknown kid refetches once per cooldown; a rotated-in key is found by that refetch', async () => {
  const { server, clock, source } = await setup();
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  assert.equal(server.fetches, 1);
  await assert.rejects(source.getKey({ alg: 'RS256', kid: 'nope-1' }, NO_TOKEN), errors.JWKSNoMatchingKey);
  assert.equal(server.fetches, 2);
  for (let i = 0; i < 50; i += 1) {
    await assert.rejects(source.getKey({ alg: 'RS256', kid: `nope-${i}` }, NO_TOKEN), errors.JWKSNoMatchingKey);
  }
  assert.equal(server.fetches, 2, 'no refetch inside the cooldown');
  server.setKeys([key.jwk, other.jwk]);
  await assert.rejects(source.getKey({ alg: 'RS256', kid: 'k2' }, NO_TOKEN), errors.JWKSNoMatchingKey, 'still inside the cooldown');
  clock.ms += SETTINGS.refetchCooldownMs;
  await source.getKey({ alg: 'RS256', kid: 'k2' }, NO_TOKEN);
  assert.equal(server.fetches, 3);
});

test('while the endpoint is down, cached keys keep answering and failures are counted', async () => {
  const { server, clock, metrics, source } = await setup();
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  server.setDown(true);
  clock.ms += 120_000; // past max-age
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  await until('failed refresh counted', () => metrics.snapshot().jwksFetches['p/error'] === 1);
  assert.equal(server.attempts, 2);
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  assert.equal(metrics.snapshot().jwksFetches['p/ok'], 1);
});

test('with no keys ever fetched and the endpoint down: keys unavailable, and no retry inside the cooldown', async () => {
  const { server, clock, source } = await setup();
  server.setDown(true);
  await assert.rejects(source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN), KeysUnavailableError);
  assert.equal(server.attempts, 1);
  await assert.rejects(source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN), KeysUnavailableError);
  assert.equal(server.attempts, 1);
  server.setDown(false);
  clock.ms += SETTINGS.refetchCooldownMs;
  await source.getKey({ alg: 'RS256', kid: 'k1' }, NO_TOKEN);
  assert.equal(server.fetches, 1);
});
