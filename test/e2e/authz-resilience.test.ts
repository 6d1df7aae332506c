// The authz service's edges, through a real Envoy to real echoing upstreams:
//   - API keys in a query parameter, only where a route asks for it, and never in
//     the path the upstream sees;
//   - path tricks never carry a request meant for the strong /api/admin routes (auth
//     api_key, ignore_case) to the weak catch-all (auth none) or past auth;
//   - with the authz service gone (stopped, then a black hole that accepts and never
//     answers): on_error deny routes answer 503, on_error allow routes pass without
//     identity or credential, auth none routes are unaffected, and nothing waits for
//     longer than the ext_authz timeout (the check ends as an error Envoy counts, not
//     as a route or stream timeout, which would be 504 or 408).
// Requests go over raw sockets where Node's HTTP client would clean the path up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import { generateApiKey, type NewApiKey } from '../../control-plane/src/store/api-keys.ts';
import { parseTestState, startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { headerLines, meansAdmin, rawGet, type RawResponse } from '../helpers/raw-http.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

const SECRET = 'e2e-authz-resilience-secret-0123456789abcdef';
/** Envoy's ext_authz deadline here (AUTHZ_TIMEOUT_MS in production; default 500). */
const AUTHZ_TIMEOUT_MS = 300;

let gw: Gateway;
let authz: AuthzService;
let authzPort: number;
let admin: HttpUpstream;
let open: HttpUpstream;
let key: NewApiKey;
let blackHole: net.Server | undefined;
const blackHoleSockets = new Set<net.Socket>();

function state(): StateInput {
  const upstreams = [
    { name: 'admin', endpoints: [{ host: '127.0.0.1', port: admin.port }] },
    { name: 'open', endpoints: [{ host: '127.0.0.1', port: open.port }] },
  ];
  const to = (upstream: string) => ({ upstream });
  return {
    revision: 1,
    upstreams,
    routes: [
      // Strong: an API key, whatever the case of the path.
      { name: 'admin-tree', match: { path: { prefix: '/api/admin/', ignore_case: true } }, action: to('admin'), auth: { mode: 'api_key' } },
      { name: 'admin-root', match: { path: { exact: '/api/admin', ignore_case: true } }, action: to('admin'), auth: { mode: 'api_key' } },
      { name: 'query-key', match: { path: { prefix: '/q/' } }, action: to('admin'), auth: { mode: 'api_key', api_key_query: 'api_key' } },
      { name: 'deny', match: { path: { prefix: '/deny/' } }, action: to('admin'), auth: { mode: 'api_key', on_error: 'deny' } },
      { name: 'default', match: { path: { prefix: '/default/' } }, action: to('admin'), auth: { mode: 'any' } },
      { name: 'allow', match: { path: { prefix: '/allow/' } }, action: to('admin'), auth: { mode: 'api_key', on_error: 'allow' } },
      // Weak: no auth, catches the rest.
      { name: 'open', match: { path: { prefix: '/' } }, action: to('open') },
    ],
    consumers: [{ name: 'alice' }],
    credentials: [{ name: 'alice-key', consumer: 'alice', kind: 'api_key' }],
  };
}

before(async () => {
  key = generateApiKey(SECRET);
  admin = await startHttpUpstream({ name: 'admin' });
  open = await startHttpUpstream({ name: 'open' });
  authz = new AuthzService({ secret: SECRET });
  authzPort = await authz.listen('127.0.0.1', 0);
  gw = await startGateway({
    envoys: [{ nodeId: 'authz-resilience' }],
    translateOptions: { authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: authzPort, timeoutMs: AUTHZ_TIMEOUT_MS } },
  });
  const input = state();
  authz.update({ state: parseTestState(input), apiKeys: [{ credential: 'alice-key', keyHash: key.hash }] });
  await gw.apply(input);
});

after(async () => {
  await gw?.stop();
  await authz?.close();
  for (const socket of blackHoleSockets) socket.destroy();
  await new Promise<void>((resolve) => (blackHole ? blackHole.close(() => resolve()) : resolve()));
  await admin?.close();
  await open?.close();
});

/** One raw request to this test's Envoy (test/helpers/raw-http.ts). */
function rawRequest(target: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return rawGet(gw.envoys[0]!.port, target, headerLines(headers), { host: 'authz.test' });
}

/** Nothing the upstream saw (path or headers) contains the key. */
function assertKeyNotUpstream(res: RawResponse, where: string): void {
  assert.ok(res.echo, `${where}: no echo (${res.status} ${res.body.slice(0, 200)})`);
  assert.ok(!JSON.stringify(res.echo).includes(key.key), `${where}: the key reached the upstream`);
}

// ---- item 3: API keys in a query parameter ------------------------------------------

describe('an API key in a query parameter', () => {
  test('is accepted where the route names the parameter, and only that parameter leaves the path', async () => {
    const cases: Array<[string, string]> = [
      [`/q/a?api_key=${key.key}`, '/q/a'],
      [`/q/b?x=1&api_key=${key.key}&y=2`, '/q/b?x=1&y=2'],
      [`/q/c?api_key=${key.key}&z=a%20b`, '/q/c?z=a%20b'],
    ];
    for (const [target, upstreamPath] of cases) {
      const res = await rawRequest(target);
      assert.equal(res.status, 200, `${target}: ${res.body.slice(0, 200)}`);
      assertKeyNotUpstream(res, target);
      assert.equal(res.echo!.upstream, 'admin');
      assert.equal(res.echo!.path, upstreamPath);
      assert.equal(res.echo!.headers['x-sluice-consumer'], 'alice');
    }
  });

  test('a header key still works there, and leaves the query alone', async () => {
    const res = await rawRequest('/q/d?x=1', { 'x-api-key': key.key });
    assert.equal(res.status, 200);
    assertKeyNotUpstream(res, 'header key');
    assert.equal(res.echo!.path, '/q/d?x=1');
  });

  test('is not read on routes that do not ask for it: 401 and nothing reaches the upstream', async () => {
    const before = admin.requests;
    const res = await rawRequest(`/deny/a?api_key=${key.key}`);
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="sluice"');
    assert.ok(!res.body.includes(key.key));
    assert.equal(admin.requests, before);
  });

  test('lookalike or repeated parameters are refused with 400 and never reach the upstream', async () => {
    const before = admin.requests;
    for (const target of [`/q/e?api%5Fkey=${key.key}`, `/q/e?API_KEY=${key.key}`, `/q/e?api_key=${key.key}&api_key=${key.key}`]) {
      const res = await rawRequest(target);
      assert.equal(res.status, 400, target);
      assert.match(res.headers['www-authenticate'] ?? '', /error="invalid_request"/, target);
      assert.ok(!res.body.includes(key.key), target);
    }
    assert.equal(admin.requests, before);
  });
});

// ---- item 7: path tricks with auth ----------------------------------------------------

const PATH_TRICKS: string[] = [
  '/api/admin/users',
  '/api/admin',
  // Encoded slashes and backslashes.
  '/api/admin%2Fusers',
  '/api%2fadmin/users',
  '/api/admin%5Cusers',
  '/api\\admin\\users',
  // Dot segments, plain and encoded.
  '/api/./admin/users',
  '/x/../api/admin/users',
  '/api/x/../admin/users',
  '/x/%2e%2e/api/admin/users',
  '/api/%2E/admin/users',
  '/api/admin/users/..',
  '/api/admin/.',
  // Doubled slashes.
  '//api/admin/users',
  '/api//admin/users',
  '///api///admin',
  // Mixed case (the strong routes set ignore_case), plain and encoded.
  '/API/admin/users',
  '/Api/Admin/users',
  '/api/ADMIN',
  '/api/%41dmin/users',
  '/x/../API/Admin/../admin/users',
  // A query string does not change the route.
  '/api/admin?x=/',
];

describe('path tricks never reach a route with weaker auth', () => {
  for (const trick of PATH_TRICKS) {
    test(trick, async () => {
      const adminBefore = admin.requests;
      const res = await rawRequest(trick);
      const where = `${trick} -> ${res.status} ${res.body.slice(0, 120)}`;
      assert.ok(meansAdmin(trick), `the table holds only paths meaning /api/admin: ${trick}`);
      if (res.echo) {
        // Only the weak route answers without a key; it must not see an admin path.
        assert.equal(res.echo.upstream, 'open', where);
        assert.ok(!meansAdmin(res.echo.path), `the open upstream saw ${res.echo.path} (${where})`);
      } else {
        // Refused by auth (401) or by the listener (400 escaped slashes, 404 nothing matched).
        assert.ok([400, 401, 404].includes(res.status), where);
      }
      assert.equal(admin.requests, adminBefore, `${where}: reached the admin upstream without a key`);

      // With the key: it reaches the admin upstream or is refused outright, never the open one.
      const keyed = await rawRequest(trick, { 'x-api-key': key.key });
      const whereKeyed = `${trick} (with key) -> ${keyed.status} ${keyed.body.slice(0, 120)}`;
      if (keyed.echo) {
        assert.equal(keyed.echo.upstream, 'admin', whereKeyed);
        assert.ok(meansAdmin(keyed.echo.path), whereKeyed);
        assertKeyNotUpstream(keyed, whereKeyed);
      } else {
        assert.ok([400, 404].includes(keyed.status), whereKeyed);
      }
    });
  }
});

// ---- item 6: the authz service unreachable ----------------------------------------------

/** ext_authz error counters of the fail-closed filter and its fail-open twin. */
async function authzErrors(): Promise<{ closed: number; open: number; allowed: number }> {
  const stats = await gw.envoys[0]!.handle.stats('ext_authz');
  const sum = (pattern: RegExp) => Object.entries(stats).filter(([name]) => pattern.test(name)).reduce((total, [, value]) => total + value, 0);
  return {
    closed: sum(/^http\.[^.]+\.ext_authz\.error$/),
    open: sum(/^http\.[^.]+\.ext_authz\.fail_open\.error$/),
    allowed: sum(/^http\.[^.]+\.ext_authz\.fail_open\.failure_mode_allowed$/),
  };
}

/** What every outage must look like, whichever way the service is gone. */
async function assertOutageBehaviour(how: string): Promise<void> {
  const before = await authzErrors();
  const adminBefore = admin.requests;
  // Fail closed: deny (explicit) and default (absent on_error) routes answer 503 and call no upstream.
  for (const target of ['/deny/x', '/default/x']) {
    const res = await rawRequest(target, { 'x-api-key': key.key });
    assert.equal(res.status, 503, `${how}: ${target} -> ${res.status} ${res.body.slice(0, 120)}`);
    assert.ok(!res.body.includes(key.key));
  }
  assert.equal(admin.requests, adminBefore, `${how}: a fail-closed route reached its upstream`);
  // Fail open: the request passes, as anonymous; the credential and any spoofed identity stay behind.
  const passed = await rawRequest('/allow/x', { 'x-api-key': key.key, authorization: `Bearer ${key.key}`, 'x-sluice-consumer': 'mallory' });
  assert.equal(passed.status, 200, `${how}: /allow/x -> ${passed.status} ${passed.body.slice(0, 120)}`);
  assertKeyNotUpstream(passed, `${how}: /allow/x`);
  assert.equal(passed.echo!.upstream, 'admin');
  for (const header of ['x-sluice-consumer', 'x-sluice-auth-mode', 'x-sluice-credential', 'authorization', 'x-api-key']) {
    assert.equal(passed.echo!.headers[header], undefined, `${how}: the upstream saw ${header}`);
  }
  // auth none: unaffected.
  const plain = await rawRequest('/anything');
  assert.equal(plain.status, 200, how);
  assert.equal(plain.echo!.upstream, 'open');
  // Each check ended as an ext_authz error on the filter that ran it (not as a hang
  // cut short by a route or stream timeout).
  const afterwards = await authzErrors();
  assert.equal(afterwards.closed - before.closed, 2, `${how}: fail-closed errors`);
  assert.equal(afterwards.open - before.open, 1, `${how}: fail-open errors`);
  assert.equal(afterwards.allowed - before.allowed, 1, `${how}: fail-open allowed`);
}

describe('with the authz service unreachable', () => {
  test('while it runs: the on_error routes check credentials like any other', async () => {
    for (const target of ['/deny/ok', '/default/ok', '/allow/ok']) {
      const res = await rawRequest(target, { 'x-api-key': key.key });
      assert.equal(res.status, 200, target);
      assert.equal(res.echo!.headers['x-sluice-consumer'], 'alice', target);
      assertKeyNotUpstream(res, target);
      assert.equal((await rawRequest(target)).status, 401, `${target} without a key`);
    }
  });

  test('stopped (connections refused): deny 503, allow passes anonymously, auth none unaffected', async () => {
    await authz.close();
    await assertOutageBehaviour('stopped');
  });

  test('a black hole (accepts, never answers): the same, each check cut off by the ext_authz timeout', async () => {
    blackHole = net.createServer((socket) => {
      blackHoleSockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => blackHoleSockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      blackHole!.once('error', reject);
      blackHole!.listen(authzPort, '127.0.0.1', () => resolve());
    });
    await assertOutageBehaviour('black hole');
    assert.ok(blackHoleSockets.size > 0 || (await authzErrors()).closed > 0, 'Envoy connected to the black hole');
  });
});
