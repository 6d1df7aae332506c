// The Check service over real gRPC (no Envoy): what it answers on the wire —
// dynamic metadata for rate-limit keys, the headers it sets and removes, the
// refusal's status, challenge and body — and how it fails closed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_CONTEXT, AUTHZ_METADATA_CONSUMER } from '../../control-plane/src/model/index.ts';
import type { CheckResponse } from '../../control-plane/src/proto/codec.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import { AUTHORIZATION_SERVICE, type WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
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

test('a new State drops a revoked key at once; metrics saw every check', async () => {
  service.update({ state: state(2), apiKeys: [] });
  assert.equal(service.revision, 2);
  const res = await check({ 'x-api-key': aliceKey.key });
  assert.equal(res.denied_response?.status?.code, 'Unauthorized');
  const metrics = service.metrics.snapshot();
  assert.equal(metrics.checks['allow/api_key'], 1);
  assert.equal(metrics.checks['error/no_state'], 1);
  assert.ok((metrics.checks['deny/api_key_unknown'] ?? 0) >= 2);
  assert.equal(metrics.latency.count, Object.values(metrics.checks).reduce((a, b) => a + b, 0));
});
