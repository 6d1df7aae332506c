// The admin API on a real Postgres, through fastify's inject (no sockets, no
// mocks): auth, CRUD for every kind, a table of bad requests that must all be
// 4xx and change nothing, optimistic concurrency, declarative apply/diff,
// rollback, API-key secrecy, fleet status and ?wait=applied.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../control-plane/src/admin/app.ts';
import { createAdminToken, revokeAdminTokens } from '../../control-plane/src/admin/tokens.ts';
import { createLogger } from '../../control-plane/src/log.ts';
import { hashApiKey } from '../../control-plane/src/store/api-keys.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { translate } from '../../control-plane/src/translate/index.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

const SECRET = 'admin-test-secret';
const BODY_LIMIT = 64 * 1024;
const CONFIG_BODY_LIMIT = 8 * BODY_LIMIT;

let db: TestDatabase;
let prisma: PrismaClient;
let store: ConfigStore;
let registry: NodeRegistry;
let app: FastifyInstance;
let writeToken: string;
let readToken: string;
/** Every line the admin app logged (pino JSON lines). */
const adminLog: string[] = [];

interface Call {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  body?: unknown;
  /** Sent as is (not JSON-encoded) when a string. */
  raw?: string;
  token?: string | null;
  headers?: Record<string, string>;
}

interface Response {
  status: number;
  headers: Record<string, unknown>;
  body: Record<string, unknown>;
  text: string;
}

async function call(c: Call): Promise<Response> {
  const headers: Record<string, string> = { ...(c.headers ?? {}) };
  const token = c.token === undefined ? writeToken : c.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (c.raw !== undefined) payload = c.raw;
  else if (c.body !== undefined) payload = JSON.stringify(c.body);
  if (payload !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const res = await app.inject({ method: c.method, url: c.url, headers, ...(payload === undefined ? {} : { payload }) });
  let body: Record<string, unknown> = {};
  try {
    body = res.body ? (JSON.parse(res.body) as Record<string, unknown>) : {};
  } catch {
    body = {};
  }
  return { status: res.statusCode, headers: res.headers, body, text: res.body };
}

const get = (url: string, token?: string | null) => call({ method: 'GET', url, token });
const post = (url: string, body: unknown, extra: Partial<Call> = {}) => call({ method: 'POST', url, body, ...extra });
const put = (url: string, body: unknown, extra: Partial<Call> = {}) => call({ method: 'PUT', url, body, ...extra });

function errorPaths(res: Response): string[] {
  return ((res.body.errors ?? []) as { path: string }[]).map((e) => e.path);
}

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
  store = new ConfigStore(prisma);
  registry = new NodeRegistry();
  const logger = createLogger('info', { write: (line: string) => void adminLog.push(line) });
  app = buildAdminApp({ store, prisma, registry, secret: SECRET, bodyLimit: BODY_LIMIT, configBodyLimit: CONFIG_BODY_LIMIT, logger });
  writeToken = (await createAdminToken(prisma, 'ci', 'write')).token;
  readToken = (await createAdminToken(prisma, 'viewer', 'read')).token;
});

after(async () => {
  await app?.close();
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

// ---- fixtures: one builder and one merge patch per kind, in dependency order ----

interface KindFixture {
  segment: string;
  short: string;
  make: (name: string, variant: number) => Record<string, unknown>;
  patch: Record<string, unknown>;
  /** Checks the patched spec kept the old fields and gained the new. */
  patched: (spec: Record<string, unknown>) => void;
}

const FIXTURES: KindFixture[] = [
  {
    segment: 'upstreams',
    short: 'up',
    make: (name, v) => ({ name, endpoints: [{ host: '127.0.0.1', port: 8000 + v }] }),
    patch: { lb_policy: 'least_request' },
    patched: (spec) => assert.equal(spec.lb_policy, 'least_request'),
  },
  {
    segment: 'rate-limit-policies',
    short: 'rlp',
    make: (name, v) => ({ name, key: ['client_ip'], limit: { requests: 10 + v, per: 'second' } }),
    patch: { limit: { requests: 99 } },
    patched: (spec) => assert.deepEqual(spec.limit, { requests: 99, per: 'second' }),
  },
  {
    segment: 'jwt-providers',
    short: 'jwt',
    make: (name, v) => ({ name, issuer: `https://issuer${v}.example`, jwks_uri: `https://issuer${v}.example/jwks` }),
    patch: { audiences: ['api'] },
    patched: (spec) => assert.deepEqual(spec.audiences, ['api']),
  },
  {
    segment: 'consumers',
    short: 'con',
    make: (name, v) => ({ name, tags: [`team-${v}`] }),
    patch: { metadata: { tier: 'gold' } },
    patched: (spec) => assert.deepEqual(spec.metadata, { tier: 'gold' }),
  },
  {
    segment: 'credentials',
    short: 'cred',
    make: (name, v) => ({ name, consumer: 'con-1', kind: 'jwt_subject', jwt: { provider: 'jwt-1', subject: `${name}-${v}` } }),
    patch: { expires_at: '2031-01-01T00:00:00Z' },
    patched: (spec) => assert.equal(spec.expires_at, '2031-01-01T00:00:00Z'),
  },
  {
    segment: 'routes',
    short: 'rt',
    make: (name, v) => ({ name, match: { path: { prefix: `/${name}` } }, action: { upstream: 'up-1' }, timeout_ms: 1000 * v }),
    patch: { timeout_ms: 5000 },
    patched: (spec) => assert.equal(spec.timeout_ms, 5000),
  },
];

test('GET /healthz needs no token; everything else does', async () => {
  assert.equal((await get('/healthz', null)).status, 200);
  const missing = await get('/v1/upstreams', null);
  assert.equal(missing.status, 401);
  assert.match(String(missing.headers['content-type']), /^application\/problem\+json/);
  assert.equal(missing.body.status, 401);
  assert.equal((await get('/v1/upstreams', 'sat_not-a-real-token')).status, 401);
  assert.equal((await call({ method: 'GET', url: '/v1/upstreams', token: null, headers: { authorization: 'Basic abc' } })).status, 401);
  assert.equal((await get('/docs/openapi.json', null)).status, 401);
});

test('a read token may read but not write (403); a revoked token is refused (401)', async () => {
  assert.equal((await get('/v1/routes', readToken)).status, 200);
  const before = await store.currentRevision();
  const denied = await post('/v1/upstreams', FIXTURES[0]!.make('ro', 1), { token: readToken });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.status, 403);
  assert.equal(await store.currentRevision(), before);

  const temp = await createAdminToken(prisma, 'temp', 'write');
  assert.equal((await get('/v1/routes', temp.token)).status, 200);
  await revokeAdminTokens(prisma, 'temp');
  assert.equal((await get('/v1/routes', temp.token)).status, 401);
});

test('CRUD works for every kind: create, get + ETag, list paging, replace, patch, delete', async () => {
  for (const fx of FIXTURES) {
    const base = `/v1/${fx.segment}`;
    for (const v of [1, 2, 3]) {
      const name = `${fx.short}-${v}`;
      const created = await post(base, fx.make(name, v));
      assert.equal(created.status, 201, `${base} create: ${created.text}`);
      assert.equal(created.headers.location, `${base}/${name}`);
      assert.equal(created.headers.etag, '"1"');
      assert.equal(typeof created.body.revision, 'number');
      assert.equal(created.body.revision, await store.currentRevision());
    }
    const got = await get(`${base}/${fx.short}-1`);
    assert.equal(got.status, 200);
    assert.equal(got.headers.etag, '"1"');
    assert.equal((got.body.spec as { name: string }).name, `${fx.short}-1`);

    const page1 = await get(`${base}?limit=2`);
    assert.deepEqual((page1.body.items as { name: string }[]).map((i) => i.name), [`${fx.short}-1`, `${fx.short}-2`]);
    assert.equal(page1.body.next, `${fx.short}-2`);
    const page2 = await get(`${base}?limit=2&after=${String(page1.body.next)}`);
    assert.deepEqual((page2.body.items as { name: string }[]).map((i) => i.name), [`${fx.short}-3`]);
    assert.equal(page2.body.next, null);
    const none = await get(`${base}?prefix=zzz`);
    assert.deepEqual(none.body.items, []);

    // Replace with the ETag from GET; the version (and ETag) moves on.
    const replaced = await put(`${base}/${fx.short}-2`, fx.make(`${fx.short}-2`, 7), { headers: { 'if-match': '"1"' } });
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.headers.etag, '"2"');
    assert.equal(replaced.body.version, 2);

    const patched = await call({ method: 'PATCH', url: `${base}/${fx.short}-1`, body: fx.patch, headers: { 'content-type': 'application/merge-patch+json' } });
    assert.equal(patched.status, 200, patched.text);
    fx.patched(patched.body.spec as Record<string, unknown>);
    assert.equal((patched.body.spec as { name: string }).name, `${fx.short}-1`);
    assert.equal(patched.body.revision, await store.currentRevision());

    const deleted = await call({ method: 'DELETE', url: `${base}/${fx.short}-3`, headers: { 'if-match': '"1"' } });
    assert.equal(deleted.status, 204, deleted.text);
    assert.equal(deleted.headers['sluice-revision'], String(await store.currentRevision()));
    assert.equal((await get(`${base}/${fx.short}-3`)).status, 404);
  }
});

interface BadRequest {
  name: string;
  call: Call;
  status: number;
  /** An errors[].path the problem must contain (exact). */
  path?: string;
}

const route = (name: string, action: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  name,
  match: { path: { prefix: `/${name}` } },
  action,
  ...extra,
});
const upstream = (name: string, endpoint: Record<string, unknown>) => ({ name, endpoints: [endpoint] });

const BAD_REQUESTS: BadRequest[] = [
  { name: 'port as a string', call: { method: 'POST', url: '/v1/upstreams', body: upstream('u-bad', { host: '127.0.0.1', port: '80' }) }, status: 422, path: 'endpoints.0.port' },
  { name: 'port out of range', call: { method: 'POST', url: '/v1/upstreams', body: upstream('u-bad', { host: '127.0.0.1', port: 70000 }) }, status: 422, path: 'endpoints.0.port' },
  { name: 'port zero', call: { method: 'POST', url: '/v1/upstreams', body: upstream('u-bad', { host: '127.0.0.1', port: 0 }) }, status: 422, path: 'endpoints.0.port' },
  { name: 'bad endpoint host', call: { method: 'POST', url: '/v1/upstreams', body: upstream('u-bad', { host: 'not a host', port: 80 }) }, status: 422, path: 'endpoints.0.host' },
  { name: 'missing required endpoints', call: { method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad' } }, status: 422, path: 'endpoints' },
  { name: 'unknown field', call: { method: 'POST', url: '/v1/upstreams', body: { ...upstream('u-bad', { host: '127.0.0.1', port: 80 }), colour: 'red' } }, status: 422, path: 'colour' },
  { name: 'name not a DNS label', call: { method: 'POST', url: '/v1/upstreams', body: upstream('Bad_Name', { host: '127.0.0.1', port: 80 }) }, status: 422, path: 'name' },
  { name: 'duplicate name', call: { method: 'POST', url: '/v1/upstreams', body: upstream('up-1', { host: '127.0.0.1', port: 80 }) }, status: 409, path: 'name' },
  { name: 'body is an array', call: { method: 'POST', url: '/v1/upstreams', body: [] }, status: 422, path: '' },
  { name: 'bad JSON', call: { method: 'POST', url: '/v1/upstreams', raw: '{"name": "u-bad",' }, status: 400 },
  { name: 'oversized body', call: { method: 'POST', url: '/v1/upstreams', raw: JSON.stringify({ name: 'u-big', pad: 'x'.repeat(BODY_LIMIT) }) }, status: 413 },
  { name: 'YAML that does not parse', call: { method: 'POST', url: '/v1/config:validate', raw: 'routes: [\n  - {', headers: { 'content-type': 'application/yaml' } }, status: 400 },
  { name: 'unsupported media type', call: { method: 'POST', url: '/v1/upstreams', raw: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, status: 415 },
  { name: 'route to an unknown upstream', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'ghost' }) }, status: 422, path: 'action.upstream' },
  { name: 'split weights sum to 99', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { split: [{ upstream: 'up-1', weight: 50 }, { upstream: 'up-2', weight: 49 }] }) }, status: 422, path: 'action.split' },
  { name: 'regex with lookahead', call: { method: 'POST', url: '/v1/routes', body: { name: 'r-bad', match: { path: { regex: '/(?=admin).*' } }, action: { upstream: 'up-1' } } }, status: 422, path: 'match.path.regex' },
  { name: 'two actions at once', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1', redirect: { host: 'example.com' } }) }, status: 422, path: 'action.redirect' },
  { name: 'missing match', call: { method: 'POST', url: '/v1/routes', body: { name: 'r-bad', action: { upstream: 'up-1' } } }, status: 422, path: 'match' },
  { name: 'unknown rate-limit policy', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1' }, { rate_limits: ['ghost'] }) }, status: 422, path: 'rate_limits.0' },
  { name: 'unknown JWT provider on a route', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1' }, { auth: { mode: 'jwt', jwt_providers: ['ghost'] } }) }, status: 422, path: 'auth.jwt_providers.0' },
  { name: 'unknown HTTP method', call: { method: 'POST', url: '/v1/routes', body: { name: 'r-bad', match: { path: { prefix: '/x' }, methods: ['FETCH'] }, action: { upstream: 'up-1' } } }, status: 422, path: 'match.methods.0' },
  { name: 'uppercase host', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1' }, { hosts: ['Example.com'] }) }, status: 422, path: 'hosts.0' },
  { name: 'setting an identity header', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1' }, { request_headers: { add: [{ name: 'x-sluice-consumer', value: 'admin' }] } }) }, status: 422, path: 'request_headers.add.0.name' },
  { name: 'timeout of the wrong type', call: { method: 'POST', url: '/v1/routes', body: route('r-bad', { upstream: 'up-1' }, { timeout_ms: 1.5 }) }, status: 422, path: 'timeout_ms' },
  { name: 'credential for an unknown consumer', call: { method: 'POST', url: '/v1/credentials', body: { name: 'c-bad', consumer: 'ghost', kind: 'jwt_subject', jwt: { provider: 'jwt-1', subject: 'x' } } }, status: 422, path: 'consumer' },
  { name: 'jwt_subject credential without jwt', call: { method: 'POST', url: '/v1/credentials', body: { name: 'c-bad', consumer: 'con-1', kind: 'jwt_subject' } }, status: 422, path: 'jwt' },
  { name: 'JWT provider with both jwks and jwks_uri', call: { method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: 'x', jwks_uri: 'https://a.example/jwks', jwks: { keys: [{ kty: 'RSA' }] } } }, status: 422, path: 'jwks' },
  { name: 'JWT provider with an ftp jwks_uri', call: { method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: 'x', jwks_uri: 'ftp://a.example/jwks' } }, status: 422, path: 'jwks_uri' },
  { name: 'rate limit of zero requests', call: { method: 'POST', url: '/v1/rate-limit-policies', body: { name: 'p-bad', key: ['route'], limit: { requests: 0, per: 'second' } } }, status: 422, path: 'limit.requests' },
  { name: 'rate limit per week', call: { method: 'POST', url: '/v1/rate-limit-policies', body: { name: 'p-bad', key: ['route'], limit: { requests: 1, per: 'week' } } }, status: 422, path: 'limit.per' },
  { name: 'duplicate consumer tags', call: { method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', tags: ['a', 'a'] } }, status: 422, path: 'tags' },
  { name: 'PUT renaming the object', call: { method: 'PUT', url: '/v1/upstreams/up-1', body: upstream('up-renamed', { host: '127.0.0.1', port: 80 }) }, status: 422, path: 'name' },
  { name: 'PUT to a missing object', call: { method: 'PUT', url: '/v1/upstreams/ghost', body: upstream('ghost', { host: '127.0.0.1', port: 80 }) }, status: 404 },
  { name: 'PUT with a stale If-Match', call: { method: 'PUT', url: '/v1/upstreams/up-1', body: upstream('up-1', { host: '127.0.0.1', port: 81 }), headers: { 'if-match': '"999"' } }, status: 412 },
  { name: 'malformed If-Match', call: { method: 'PUT', url: '/v1/upstreams/up-1', body: upstream('up-1', { host: '127.0.0.1', port: 81 }), headers: { 'if-match': 'abc' } }, status: 400, path: 'If-Match' },
  { name: 'DELETE an upstream a route uses', call: { method: 'DELETE', url: '/v1/upstreams/up-1' }, status: 422, path: 'routes.rt-1.action.upstream' },
  { name: 'DELETE a missing object', call: { method: 'DELETE', url: '/v1/routes/ghost' }, status: 404 },
  { name: 'DELETE with a stale If-Match', call: { method: 'DELETE', url: '/v1/routes/rt-2', headers: { 'if-match': '"999"' } }, status: 412 },
  { name: 'PATCH that makes two actions', call: { method: 'PATCH', url: '/v1/routes/rt-1', body: { action: { direct_response: { status: 200 } } } }, status: 422, path: 'action.direct_response' },
  { name: 'PATCH with an array body', call: { method: 'PATCH', url: '/v1/routes/rt-1', body: [1] }, status: 400 },
  { name: 'PATCH with a wrong type', call: { method: 'PATCH', url: '/v1/routes/rt-1', body: { priority: 'high' } }, status: 422, path: 'priority' },
  { name: 'canary weights sum to 99', call: { method: 'POST', url: '/v1/routes/rt-1:canary', body: { weights: [{ upstream: 'up-1', weight: 90 }, { upstream: 'up-2', weight: 9 }] } }, status: 422, path: 'weights' },
  { name: 'canary to an unknown upstream', call: { method: 'POST', url: '/v1/routes/rt-1:canary', body: { weights: [{ upstream: 'up-1', weight: 90 }, { upstream: 'ghost', weight: 10 }] } }, status: 422, path: 'action.split.1.upstream' },
  { name: 'canary on a missing route', call: { method: 'POST', url: '/v1/routes/ghost:canary', body: { weights: [{ upstream: 'up-1', weight: 100 }] } }, status: 404 },
  { name: 'declarative config with an unknown upstream', call: { method: 'PUT', url: '/v1/config', body: { routes: [route('r-bad', { upstream: 'ghost' })] } }, status: 422, path: 'routes.0.action.upstream' },
  { name: 'declarative config with an unknown kind', call: { method: 'PUT', url: '/v1/config', body: { services: [] } }, status: 422, path: 'services' },
  { name: 'list limit above 500', call: { method: 'GET', url: '/v1/routes?limit=1000' }, status: 400, path: 'limit' },
  { name: 'wait=something-else', call: { method: 'POST', url: '/v1/upstreams?wait=soon', body: upstream('u-bad', { host: '127.0.0.1', port: 80 }) }, status: 400, path: 'wait' },
  { name: 'rollback to a revision that does not exist', call: { method: 'POST', url: '/v1/revisions/99999:rollback' }, status: 404 },
  { name: 'unknown path', call: { method: 'GET', url: '/v1/services' }, status: 404 },
];

test(`${BAD_REQUESTS.length} bad requests each get a 4xx problem naming the field, and change nothing`, async () => {
  assert.ok(BAD_REQUESTS.length >= 30);
  const revision = await store.currentRevision();
  const { state } = await store.loadState();
  for (const bad of BAD_REQUESTS) {
    const res = await call(bad.call);
    assert.equal(res.status, bad.status, `${bad.name}: expected ${bad.status}, got ${res.status} ${res.text}`);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/, bad.name);
    assert.equal(res.body.status, bad.status, bad.name);
    assert.equal(typeof res.body.title, 'string', bad.name);
    assert.equal(typeof res.body.detail, 'string', bad.name);
    if (bad.path !== undefined) assert.ok(errorPaths(res).includes(bad.path), `${bad.name}: no error at '${bad.path}' in ${res.text}`);
    assert.equal(await store.currentRevision(), revision, `${bad.name} made a revision`);
  }
  assert.deepEqual((await store.loadState()).state, state);
});

test('two concurrent PUTs with the same If-Match: exactly one 200, the other 412', async () => {
  const current = await get('/v1/upstreams/up-2');
  const tag = String(current.headers.etag);
  const [a, b] = await Promise.all([
    put('/v1/upstreams/up-2', upstream('up-2', { host: '127.0.0.1', port: 9101 }), { headers: { 'if-match': tag } }),
    put('/v1/upstreams/up-2', upstream('up-2', { host: '127.0.0.1', port: 9102 }), { headers: { 'if-match': tag } }),
  ]);
  assert.deepEqual([a.status, b.status].sort(), [200, 412]);
  const winner = a.status === 200 ? 9101 : 9102;
  const after = await get('/v1/upstreams/up-2');
  assert.equal((after.body.spec as { endpoints: { port: number }[] }).endpoints[0]?.port, winner);
});

test('canary sets a split in one call, and back to one upstream at 100', async () => {
  const split = await post('/v1/routes/rt-2:canary', { weights: [{ upstream: 'up-1', weight: 90 }, { upstream: 'up-2', weight: 10 }] });
  assert.equal(split.status, 200, split.text);
  assert.deepEqual((split.body.spec as { action: unknown }).action, { split: [{ upstream: 'up-1', weight: 90 }, { upstream: 'up-2', weight: 10 }] });
  assert.equal(split.body.revision, await store.currentRevision());
  const done = await post('/v1/routes/rt-2:canary', { weights: [{ upstream: 'up-1', weight: 0 }, { upstream: 'up-2', weight: 100 }] });
  assert.equal(done.status, 200, done.text);
  assert.deepEqual((done.body.spec as { action: unknown }).action, { upstream: 'up-2' });
});

test('config:validate accepts JSON and YAML; config:diff lists exactly what PUT /v1/config does; applying twice makes no new revision', async () => {
  const { state } = await store.loadState();
  const { revision: _r, ...config } = state;
  const yamlBody = 'upstreams:\n  - name: y1\n    endpoints: [{host: 127.0.0.1, port: 80}]\n';
  const yamlValid = await call({ method: 'POST', url: '/v1/config:validate', raw: yamlBody, headers: { 'content-type': 'application/yaml' } });
  assert.equal(yamlValid.status, 200, yamlValid.text);
  assert.deepEqual(yamlValid.body, { valid: true });
  assert.deepEqual((await post('/v1/config:validate', config)).body, { valid: true });

  // Add an upstream, change a route, remove another route.
  const next = structuredClone(config);
  next.upstreams.push({ name: 'decl-up', endpoints: [{ host: '127.0.0.1', port: 7000, weight: 1 }], lb_policy: 'round_robin' } as (typeof next.upstreams)[number]);
  next.routes = next.routes.filter((r) => r.name !== 'rt-2').map((r) => (r.name === 'rt-1' ? { ...r, timeout_ms: 1234 } : r));

  const before = await store.currentRevision();
  const diff = await post('/v1/config:diff', next);
  assert.equal(diff.status, 200, diff.text);
  assert.equal(await store.currentRevision(), before, 'diff must not write');
  assert.deepEqual(diff.body.changes, [
    { op: 'create', kind: 'upstreams', name: 'decl-up' },
    { op: 'update', kind: 'routes', name: 'rt-1' },
    { op: 'delete', kind: 'routes', name: 'rt-2' },
  ]);

  const applied = await put('/v1/config', next);
  assert.equal(applied.status, 200, applied.text);
  assert.deepEqual(applied.body.changes, diff.body.changes);
  assert.equal(applied.body.changed, true);
  assert.equal(applied.body.revision, before + 1);
  assert.deepEqual(await store.revisionDiff(before + 1).then((d) => d.map(({ op, kind, name }) => ({ op, kind, name }))), diff.body.changes);

  const again = await put('/v1/config', next);
  assert.equal(again.status, 200);
  assert.equal(again.body.changed, false);
  assert.equal(again.body.revision, before + 1);
  assert.deepEqual(again.body.changes, []);
  assert.equal(await store.currentRevision(), before + 1);
  assert.deepEqual((await post('/v1/config:diff', next)).body.changes, []);
});

test('revisions are listed and paged; rollback restores revision n exactly, as a new revision', async () => {
  const target = await store.currentRevision();
  const { state: atTarget } = await store.loadState();
  assert.equal((await post('/v1/upstreams', upstream('after-1', { host: '127.0.0.1', port: 81 }))).status, 201);
  assert.equal((await call({ method: 'DELETE', url: '/v1/routes/rt-1' })).status, 204);
  assert.equal((await call({ method: 'PATCH', url: '/v1/consumers/con-2', body: { tags: ['changed'] } })).status, 200);
  const head = await store.currentRevision();

  const page = await get('/v1/revisions?limit=2');
  assert.deepEqual((page.body.items as { revision: number }[]).map((r) => r.revision), [head, head - 1]);
  assert.equal(page.body.next, head - 1);
  const older = await get(`/v1/revisions?limit=2&before=${String(page.body.next)}`);
  assert.deepEqual((older.body.items as { revision: number }[]).map((r) => r.revision), [head - 2, head - 3]);

  const one = await get(`/v1/revisions/${head - 1}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.author, 'token:ci');
  assert.deepEqual((one.body.changes as { op: string; kind: string; name: string }[]).map(({ op, kind, name }) => [op, kind, name]), [['delete', 'routes', 'rt-1']]);
  assert.equal((await get('/v1/revisions/99999')).status, 404);

  const rolled = await post(`/v1/revisions/${target}:rollback`, undefined);
  assert.equal(rolled.status, 200, rolled.text);
  assert.equal(rolled.body.revision, head + 1);
  assert.equal(rolled.body.changed, true);
  const { state: restored } = await store.loadState();
  assert.equal(restored.revision, head + 1);
  assert.deepEqual({ ...restored, revision: 0 }, { ...atTarget, revision: 0 });
  // What Envoy gets is the same, byte for byte.
  const envoyView = (state: typeof restored) => {
    const resources = translate(state, { listenerPort: 10000 });
    return Object.values(resources).flat().map((r) => [r.typeUrl, r.name, Buffer.from(r.value).toString('base64')]);
  };
  assert.deepEqual(envoyView(restored), envoyView(atTarget));
});

test('an API key is shown once at creation and never again, nor stored or logged in clear', async () => {
  assert.equal((await post('/v1/consumers', { name: 'key-owner' })).status, 201);
  const created = await post('/v1/credentials', { name: 'key-1', consumer: 'key-owner', kind: 'api_key' });
  assert.equal(created.status, 201, created.text);
  const key = created.body.key;
  assert.equal(typeof key, 'string');
  const keyText = String(key);
  assert.ok(keyText.length > 20);
  assert.equal(typeof created.body.key_prefix, 'string');
  assert.ok(keyText.startsWith(String(created.body.key_prefix)));

  const got = await get('/v1/credentials/key-1');
  assert.equal(got.status, 200);
  assert.equal(got.body.key, undefined);
  assert.equal(got.body.key_prefix, created.body.key_prefix);
  assert.ok(!got.text.includes(keyText));
  const list = await get('/v1/credentials?limit=500');
  assert.ok(!list.text.includes(keyText));
  const revisionPage = await get('/v1/revisions?limit=500');
  assert.ok(!revisionPage.text.includes(keyText));
  const revisionDetail = await get(`/v1/revisions/${String(created.body.revision)}`);
  assert.ok(!revisionDetail.text.includes(keyText));

  const audit = await prisma.auditLog.findMany();
  assert.ok(audit.length > 0);
  assert.ok(!JSON.stringify(audit, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).includes(keyText));
  const revisions = await prisma.revision.findMany();
  assert.ok(!JSON.stringify(revisions, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).includes(keyText));

  const row = await prisma.credential.findUnique({ where: { name: 'key-1' } });
  assert.ok(row?.keyHash);
  assert.notEqual(row.keyHash, keyText);
  assert.ok(!row.keyHash.includes(keyText));
  assert.equal(row.keyHash, hashApiKey(SECRET, keyText));

  // The admin log has a line for each of these requests, and neither the key nor a token.
  assert.ok(adminLog.length > 0);
  for (const secret of [keyText, writeToken, readToken]) assert.ok(!adminLog.some((line) => line.includes(secret)), 'a secret reached the admin log');
});

test('a rollback restores a deleted API-key credential without its key: the key stays revoked', async () => {
  assert.equal((await post('/v1/consumers', { name: 'rb-owner' })).status, 201);
  const created = await post('/v1/credentials', { name: 'rb-key', consumer: 'rb-owner', kind: 'api_key' });
  assert.equal(created.status, 201, created.text);
  const keyHash = hashApiKey(SECRET, String(created.body.key));
  const withKey = Number(created.body.revision);
  assert.equal((await call({ method: 'DELETE', url: '/v1/credentials/rb-key' })).status, 204);

  const rolled = await post(`/v1/revisions/${withKey}:rollback`, undefined);
  assert.equal(rolled.status, 200, rolled.text);
  assert.deepEqual(rolled.body.keys_not_restored, ['rb-key']);
  const restored = await get('/v1/credentials/rb-key');
  assert.equal(restored.status, 200);
  assert.equal(restored.body.key_prefix, undefined, 'restored without key material');
  // What the authz service will be handed: the newest State's key index.
  const { keys } = await store.loadState();
  assert.ok(!Object.values(keys).some((k) => k.hash === keyHash), 'the deleted key must not be usable again');
  const [latest] = (await get('/v1/revisions?limit=1')).body.items as { message: string }[];
  assert.match(latest?.message ?? '', /API keys not restored, revoked for good: rb-key/);
});

test('fleet status reports nodes against the current revision; ?wait=applied waits for the fleet', async () => {
  const revision = await store.currentRevision();
  registry.connect({ streamId: 1, nodeId: 'envoy-a', group: 'default', protocol: 'sotw', connectedAt: new Date().toISOString() });
  registry.recordSynced(1, revision);
  const fleet = await get('/v1/fleet', readToken);
  assert.equal(fleet.status, 200, fleet.text);
  assert.equal(fleet.body.revision, revision);
  const nodes = fleet.body.nodes as { node_id: string; in_sync: boolean; synced_revision: number; group: string; protocol: string }[];
  assert.deepEqual(nodes.map((n) => [n.node_id, n.group, n.protocol, n.synced_revision, n.in_sync]), [['envoy-a', 'default', 'sotw', revision, true]]);
  assert.deepEqual((fleet.body.revisions as { revision: number; accepted: number }[])[0], { revision, accepted: 1, rejected: 0 });

  // Nobody syncs: applied false after the timeout, but the write itself is committed.
  const slow = await post('/v1/upstreams?wait=applied&timeout=150', upstream('wait-1', { host: '127.0.0.1', port: 80 }));
  assert.equal(slow.status, 201);
  assert.equal(slow.body.applied, false);
  assert.equal(slow.body.revision, revision + 1);

  // The node syncs shortly after the commit: applied true.
  const pending = post('/v1/upstreams?wait=applied&timeout=5000', upstream('wait-2', { host: '127.0.0.1', port: 80 }));
  const timer = setInterval(() => registry.recordSynced(1, revision + 2), 20);
  const fast = await pending;
  clearInterval(timer);
  assert.equal(fast.status, 201);
  assert.equal(fast.body.applied, true);
  assert.equal(fast.body.revision, revision + 2);
  registry.disconnect(1);
});

test('OpenAPI document is generated from the schemas, and /docs lists the paths', async () => {
  const doc = await get('/docs/openapi.json');
  assert.equal(doc.status, 200);
  assert.equal(doc.body.openapi, '3.1.0');
  const schemas = (doc.body.components as { schemas: Record<string, { properties?: Record<string, unknown> }> }).schemas;
  assert.ok(schemas.Route?.properties?.action);
  assert.ok(schemas.Upstream?.properties?.endpoints);
  assert.ok(Object.keys(doc.body.paths as object).includes('/v1/rate-limit-policies/{name}'));
  const page = await call({ method: 'GET', url: '/docs' });
  assert.equal(page.status, 200);
  assert.match(page.text, /\/v1\/config:diff/);
});

test('the token CLI prints a working token', () => {
  const res = spawnSync(process.execPath, ['--import', 'tsx', 'control-plane/src/admin/token-cli.ts', 'create', 'cli-made', 'read'], {
    env: { ...process.env, DATABASE_URL: db.url },
    encoding: 'utf8',
  });
  assert.equal(res.status, 0, res.stderr);
  const token = res.stdout.trim();
  assert.match(token, /^sat_[A-Za-z0-9_-]{40,}$/);
  return get('/v1/routes', token).then((r) => assert.equal(r.status, 200));
});

test('with Postgres gone: writes get 503 "store unavailable", fleet status still answers', async () => {
  const lost = await createTestDatabase();
  await migrate(lost.url);
  const lostPrisma = createPrisma(lost.url);
  const lostApp = buildAdminApp({ store: new ConfigStore(lostPrisma), prisma: lostPrisma, registry, secret: SECRET });
  const token = (await createAdminToken(lostPrisma, 'ops', 'write')).token;
  const auth = { authorization: `Bearer ${token}` };
  try {
    const created = await lostApp.inject({ method: 'POST', url: '/v1/upstreams', headers: auth, payload: upstream('u', { host: '127.0.0.1', port: 80 }) });
    assert.equal(created.statusCode, 201);
    assert.equal((await lostApp.inject({ method: 'GET', url: '/v1/fleet', headers: auth })).json().revision, 1);

    await lost.drop();

    const write = await lostApp.inject({ method: 'POST', url: '/v1/upstreams', headers: auth, payload: upstream('v', { host: '127.0.0.1', port: 80 }) });
    assert.equal(write.statusCode, 503, write.body);
    assert.match(String(write.headers['content-type']), /^application\/problem\+json/);
    assert.match(write.json().detail as string, /store unavailable/);
    const read = await lostApp.inject({ method: 'GET', url: '/v1/upstreams', headers: auth });
    assert.equal(read.statusCode, 503, read.body);

    const fleet = await lostApp.inject({ method: 'GET', url: '/v1/fleet', headers: auth });
    assert.equal(fleet.statusCode, 200, fleet.body);
    assert.equal(fleet.json().revision, 1);
    assert.equal(fleet.json().revision_stale, true);
  } finally {
    await lostApp.close();
    await lostPrisma.$disconnect();
  }
});

test('with Postgres unreachable (connection refused): 503 problem, not 500', async () => {
  const deadPrisma = createPrisma('postgresql://sluice:sluice@127.0.0.1:1/sluice');
  const deadApp = buildAdminApp({ store: new ConfigStore(deadPrisma), prisma: deadPrisma, registry });
  try {
    const res = await deadApp.inject({ method: 'GET', url: '/v1/routes', headers: { authorization: 'Bearer sat_whatever' } });
    assert.equal(res.statusCode, 503, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.match(res.json().detail as string, /store unavailable/);
  } finally {
    await deadApp.close();
    await deadPrisma.$disconnect();
  }
});

test('a whole config may be larger than an object body: PUT /v1/config has its own limit, and past it a 413 problem', async () => {
  const routes = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `big-${i}`, match: { path: { prefix: `/big/${i}/${'p'.repeat(80)}` } }, action: { direct_response: { status: 200 } } }));
  const fits = { routes: routes(1_200) };
  assert.ok(JSON.stringify(fits).length > BODY_LIMIT && JSON.stringify(fits).length < CONFIG_BODY_LIMIT);
  const validated = await call({ method: 'POST', url: '/v1/config:validate', body: fits });
  assert.equal(validated.status, 200, validated.text);
  const tooBig = { routes: routes(5_000) };
  assert.ok(JSON.stringify(tooBig).length > CONFIG_BODY_LIMIT);
  const refused = await call({ method: 'PUT', url: '/v1/config', body: tooBig });
  assert.equal(refused.status, 413, refused.text);
  assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
  const object = await call({ method: 'POST', url: '/v1/upstreams', raw: JSON.stringify({ name: 'u-pad', endpoints: [{ host: '127.0.0.1', port: 80 }], pad: 'x'.repeat(BODY_LIMIT) }) });
  assert.equal(object.status, 413, 'object endpoints keep the smaller limit');
});
