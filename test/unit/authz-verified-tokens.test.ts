// The verified-token cache (authz/verified-tokens.ts) may skip a signature check,
// never a decision: a token it remembers is still refused once it expires, when
// a new State changes the provider, and on a route that does not allow its
// provider; and it stays bounded. Checks run in-process with a test clock.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTHZ_CONTEXT } from '../../control-plane/src/model/index.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import { VerifiedTokens } from '../../control-plane/src/authz/verified-tokens.ts';
import { parseTestState } from '../helpers/gateway.ts';
import { makeSigningKey, type SigningKey } from '../helpers/jwks-server.ts';

const ISS = 'https://issuer.test/cache';
const T0 = 1_800_000_000_000; // the test clock's start (ms)
let key: SigningKey;
let other: SigningKey;

before(async () => {
  key = await makeSigningKey('ES256', 'c1');
  other = await makeSigningKey('ES256', 'c2');
});

function state(revision: number, audiences: string[]) {
  return parseTestState({
    revision,
    upstreams: [{ name: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
    routes: [{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'u' }, auth: { mode: 'jwt' } }],
    jwt_providers: [
      { name: 'main', issuer: ISS, audiences, jwks: { keys: [key.jwk as { kty: string }] }, algorithms: ['ES256'], clock_skew_s: 0 },
      { name: 'second', issuer: 'https://issuer.test/second', jwks: { keys: [other.jwk as { kty: string }] }, algorithms: ['ES256'], clock_skew_s: 0 },
    ],
  });
}

function checkWith(service: AuthzService, token: string, providers?: string) {
  const context: Record<string, string> = { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'jwt' };
  if (providers) context[AUTHZ_CONTEXT.jwtProviders] = providers;
  return service.check({ attributes: { request: { http: { headers: { authorization: `Bearer ${token}` }, path: '/x' } }, context_extensions: context } });
}

const reasonOf = (res: Awaited<ReturnType<typeof checkWith>>) => (res.status?.code ?? 0) === 0 ? 'ok' : res.status?.message;

test('a remembered token is refused once it expires, and is remembered only after a pass', async () => {
  let now = T0;
  const service = new AuthzService({ now: () => now });
  service.update({ state: state(1, ['api']), apiKeys: [] });
  const token = await key.sign({ iss: ISS, aud: 'api', sub: 's', exp: T0 / 1000 + 10 });
  assert.equal(reasonOf(await checkWith(service, token)), 'ok');
  assert.equal(reasonOf(await checkWith(service, token)), 'ok');
  now = T0 + 9_999;
  assert.equal(reasonOf(await checkWith(service, token)), 'ok');
  now = T0 + 10_000; // exp <= now: expired, as jose counts it
  assert.equal(reasonOf(await checkWith(service, token)), 'token_expired');
  assert.equal(reasonOf(await checkWith(service, token)), 'token_expired');
  await service.close();
});

test('a remembered token is judged afresh under a new State (audience no longer accepted)', async () => {
  const service = new AuthzService({ now: () => T0 });
  service.update({ state: state(1, ['api']), apiKeys: [] });
  const token = await key.sign({ iss: ISS, aud: 'api', sub: 's', exp: T0 / 1000 + 60 });
  assert.equal(reasonOf(await checkWith(service, token)), 'ok');
  service.update({ state: state(2, ['other-api']), apiKeys: [] });
  assert.equal(reasonOf(await checkWith(service, token)), 'audience');
  await service.close();
});

test('a remembered token is refused on a route that does not allow its provider', async () => {
  const service = new AuthzService({ now: () => T0 });
  service.update({ state: state(1, ['api']), apiKeys: [] });
  const token = await key.sign({ iss: ISS, aud: 'api', sub: 's', exp: T0 / 1000 + 60 });
  assert.equal(reasonOf(await checkWith(service, token, 'main')), 'ok');
  assert.equal(reasonOf(await checkWith(service, token, 'second')), 'provider_not_allowed');
  assert.equal(reasonOf(await checkWith(service, token, 'main')), 'ok');
  await service.close();
});

test('the cache holds at most its bound, dropping the oldest', () => {
  const cache = new VerifiedTokens(3);
  const entry = { alg: 'ES256', iss: ISS } as Parameters<VerifiedTokens['add']>[1];
  for (const token of ['a', 'b', 'c', 'd']) cache.add(token, entry);
  assert.equal(cache.size, 3);
  assert.equal(cache.get('a'), undefined);
  assert.ok(cache.get('d'));
});
