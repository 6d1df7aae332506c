// The Check service over real gRPC (no Envoy): what it answers on the wire —
// dynamic metadata for rate-limit keys, the headers it sets and removes, the
// refusal's status, challenge and body — and how it fails closed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_CONTEXT, AUTHZ_METADATA_CONSUMER } from '../../control-plane/src/model/index.ts';
import type { CheckResponse } from '../../control-plane/src/proto/codec.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import { AUTHORIZATION_SERVICE } from '../../control-plane/src/authz/client.ts';
import type { WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import { generateApiKey } from '../../control-plane/src/store/api-keys.ts';
import { parseTestState } from '../helpers/gateway.ts';
import { makeSigningKey, type SigningKey } from '../helpers/jwks-server.ts';

const SECRET = 'unit-authz-service-secret-0123456789abc';
const ISS = 'https://issuer.test/unit';
const aliceKey = generateApiKey(SECRET);
let jwtKey: SigningKey;
let service: AuthzService;
let client: grpc.Client & { Check: (req: WireCheckRequest, cb: (err: grpc.ServiceError | null, res?: CheckResponse) => void) => void };

function state(revision: number) {
  return parseTestState({
    revision,
    upstreams: [{ name: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
    routes: [{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'u' }, auth: { mode: 'any' } }],
    consumers: [{ name: 'alice', tags: ['gold'] }],
    credentials: [{ name: 'alice-key', consumer: 'alice', kind: 'api_key' }],
    jwt_providers: [
      {
        name: 'unit',
        issuer: ISS,
        jwks: { keys: [jwtKey.jwk as { kty: string }] },
        algorithms: ['ES256'],
        claims_to_headers: [{ claim: 'email', header: 'x-user-email' }],
      },
    ],
  });
}

before(async () => {
  jwtKey = await makeSigningKey('ES256', 'u1');
  service = new AuthzService({ secret: SECRET });
  const port = await service.listen('127.0.0.1', 0);
  const Client = grpc.makeGenericClientConstructor(AUTHORIZATION_SERVICE, 'Authorization');
  client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as typeof client;
});

after(async () => {
  client?.close();
  await service?.close();
});

function check(headers: Record<string, string>, context: Record<string, string> = { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'any' }): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    client.Check({ attributes: { request: { http: { headers, path: '/x', method: 'GET' } }, context_extensions: context } }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

// Decoded enums come back by name (DECODE_OPTIONS: enums as String).
type Header = { header?: { key?: string; value?: string } | null; append_action?: unknown };
const headerMap = (headers: Header[] | undefined) => Object.fromEntries((headers ?? []).map((h) => [h.header?.key, h.header?.value]));

test('before any State: fail closed with 503', async () => {
  const res = await check({ 'x-api-key': aliceKey.key });
  assert.equal(res.status?.code, 14);
  assert.equal(res.denied_response?.status?.code, 'ServiceUnavailable');
});

test('an API key: identity headers overwrite, credential and stale identity headers removed, consumer in dynamic metadata', async () => {
  service.update({ state: state(1), apiKeys: [{ credential: 'alice-key', keyHash: aliceKey.hash }] });
  const res = await check({ 'x-api-key': aliceKey.key, 'x-user-email': 'spoof@example.com', 'x-sluice-anything': 'x', 'x-sluice-consumer': 'mallory' });
  assert.equal(res.status?.code ?? 0, 0);
  const ok = res.ok_response!;
  assert.deepEqual(headerMap(ok.headers as Header[]), {
    'x-sluice-auth-mode': 'api_key',
    'x-sluice-consumer': 'alice',
    'x-sluice-credential': 'alice-key',
    'x-sluice-scopes': 'gold',
  });
  for (const h of ok.headers as Header[]) assert.equal(h.append_action, 'OVERWRITE_IF_EXISTS_OR_ADD');
  const removed = ok.headers_to_remove ?? [];
  for (const name of ['x-api-key', 'x-sluice-anything', 'x-user-email', 'x-user-id', 'x-consumer-id', 'x-sluice-jwt-issuer', 'x-sluice-jwt-subject']) assert.ok(removed.includes(name), name);
  assert.ok(!removed.includes('x-sluice-consumer'), 'a header the answer sets is not also removed');
  const fields = (res.dynamic_metadata as { fields?: Record<string, { stringValue?: string }> }).fields ?? {};
  assert.equal(fields[AUTHZ_METADATA_CONSUMER]?.stringValue, 'alice');
  assert.equal(fields.credential?.stringValue, 'alice-key');
  assert.equal(fields.auth_mode?.stringValue, 'api_key');
});

test('a JWT: issuer, subject and claim headers set, Authorization removed', async () => {
  const jwt = await jwtKey.sign({ iss: ISS, sub: 'someone', email: 'a@example.com', exp: Math.floor(Date.now() / 1000) + 60 });
  const res = await check({ authorization: `Bearer ${jwt}` });
  const set = headerMap(res.ok_response?.headers as Header[]);
  assert.equal(set['x-sluice-jwt-issuer'], ISS);
  assert.equal(set['x-sluice-jwt-subject'], 'someone');
  assert.equal(set['x-user-email'], 'a@example.com');
  assert.equal(set['x-sluice-consumer'], undefined);
  assert.ok(res.ok_response?.headers_to_remove?.includes('authorization'));
  assert.ok(!res.ok_response?.headers_to_remove?.includes('x-user-email'));
});

test('a JWT without exp is refused', async () => {
  const jwt = await jwtKey.sign({ iss: ISS, sub: 'someone' });
  const res = await check({ authorization: `Bearer ${jwt}` });
  assert.equal(res.denied_response?.status?.code, 'Unauthorized');
});

test('a refusal: 401, RFC 6750 challenge, JSON body without the credential, UNAUTHENTICATED', async () => {
  const presented = generateApiKey(SECRET).key;
  const res = await check({ 'x-api-key': presented });
  assert.equal(res.status?.code, 16);
  const denied = res.denied_response!;
  assert.equal(denied.status?.code, 'Unauthorized');
  const headers = headerMap(denied.headers as Header[]);
  assert.equal(headers['www-authenticate'], 'Bearer realm="sluice", error="invalid_token", error_description="the API key is not valid"');
  assert.equal(headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(String(denied.body)), { error: 'invalid_token', message: 'the API key is not valid' });
  assert.ok(!JSON.stringify(res).includes(presented));
  assert.ok(!JSON.stringify(res).includes(presented.split('.')[0]!), 'not even the visible prefix');
});

test('a route without auth settings in its context is refused (fail closed)', async () => {
  const res = await check({ 'x-api-key': aliceKey.key }, {});
  assert.equal(res.denied_response?.status?.code, 'Forbidden');
});

// ---- API keys in a query parameter (auth.api_key_query) --------------------------

const QUERY_ROUTE = { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'api_key', [AUTHZ_CONTEXT.apiKeyQuery]: 'api_key' };

function checkPath(path: string, headers: Record<string, string> = {}, context: Record<string, string> = QUERY_ROUTE): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    client.Check({ attributes: { request: { http: { headers, path, method: 'GET' } }, context_extensions: context } }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

test('an API key in the route\'s query parameter: accepted, and that parameter (only) is removed', async () => {
  for (const path of [`/x?api_key=${aliceKey.key}`, `/x?a=1&api_key=${aliceKey.key}&b=2`, `/x?api_key=${aliceKey.key.replace('.', '%2E')}`]) {
    const res = await checkPath(path);
    assert.equal(res.status?.code ?? 0, 0, path);
    assert.deepEqual(res.ok_response?.query_parameters_to_remove, ['api_key'], path);
    assert.equal(headerMap(res.ok_response?.headers as Header[])['x-sluice-consumer'], 'alice', path);
    assert.ok(!res.ok_response?.headers_to_remove?.includes('x-api-key'), path);
  }
});

test('a header key on a query-key route removes no query parameter', async () => {
  const res = await checkPath('/x?a=1', { 'x-api-key': aliceKey.key });
  assert.equal(res.status?.code ?? 0, 0);
  assert.deepEqual(res.ok_response?.query_parameters_to_remove ?? [], []);
  assert.ok(res.ok_response?.headers_to_remove?.includes('x-api-key'));
});

test('a query key where the route does not ask for one is not read', async () => {
  const res = await checkPath(`/x?api_key=${aliceKey.key}`, {}, { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'api_key' });
  assert.equal(res.denied_response?.status?.code, 'Unauthorized');
  assert.equal(headerMap(res.denied_response?.headers as Header[])['www-authenticate'], 'Bearer realm="sluice"');
});

test('ambiguous query keys are refused with 400: repeated, beside a header key, or a lookalike name', async () => {
  const cases: Array<[string, Record<string, string>, string]> = [
    [`/x?api_key=${aliceKey.key}&api_key=${aliceKey.key}`, {}, 'send exactly one credential'],
    [`/x?api_key=${aliceKey.key}`, { 'x-api-key': aliceKey.key }, 'send exactly one credential'],
    [`/x?api%5Fkey=${aliceKey.key}`, {}, 'the API-key query parameter is spelled ambiguously'],
    [`/x?API_KEY=${aliceKey.key}`, {}, 'the API-key query parameter is spelled ambiguously'],
    [`/x?api_key=${aliceKey.key}&Api_Key=x`, {}, 'the API-key query parameter is spelled ambiguously'],
  ];
  for (const [path, headers, description] of cases) {
    const res = await checkPath(path, headers);
    assert.equal(res.denied_response?.status?.code, 'BadRequest', path);
    assert.equal(headerMap(res.denied_response?.headers as Header[])['www-authenticate'], `Bearer realm="sluice", error="invalid_request", error_description="${description}"`, path);
    assert.ok(!JSON.stringify(res).includes(aliceKey.key), `${path}: the key is echoed`);
  }
});

test('a malformed or empty query key is refused with 401 invalid_token', async () => {
  for (const path of ['/x?api_key=%E0%A4%A', '/x?api_key', '/x?api_key=', '/x?api_key=sk_short']) {
    const res = await checkPath(path);
    assert.equal(res.denied_response?.status?.code, 'Unauthorized', path);
    assert.equal(headerMap(res.denied_response?.headers as Header[])['www-authenticate'], 'Bearer realm="sluice", error="invalid_token", error_description="the API key is malformed"', path);
  }
});

test('a query-key setting on a JWT route, or an unusable name, is refused (fail closed)', async () => {
  for (const context of [
    { ...QUERY_ROUTE, [AUTHZ_CONTEXT.authMode]: 'jwt' },
    { ...QUERY_ROUTE, [AUTHZ_CONTEXT.apiKeyQuery]: 'api key' },
  ]) {
    const res = await checkPath(`/x?api_key=${aliceKey.key}`, {}, context);
    assert.equal(res.denied_response?.status?.code, 'Forbidden');
  }
});

test('a new State drops a revoked key at once; metrics saw every check', async () => {
  service.update({ state: state(2), apiKeys: [] });
  assert.equal(service.revision, 2);
  const res = await check({ 'x-api-key': aliceKey.key });
  assert.equal(res.denied_response?.status?.code, 'Unauthorized');
  const metrics = service.metrics.snapshot();
  assert.equal(metrics.checks['allow/api_key'], 5);
  assert.equal(metrics.checks['error/no_state'], 1);
  assert.ok((metrics.checks['deny/api_key_unknown'] ?? 0) >= 2);
  assert.equal(metrics.latency.count, Object.values(metrics.checks).reduce((a, b) => a + b, 0));
});
