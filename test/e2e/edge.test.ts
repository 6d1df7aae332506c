// The gateway listener is safe by default (issue 8, items 4-7), tried the way an
// attacker would against a real Envoy on loopback:
//   - path tricks never reach a weaker route than the path means (encoded slashes,
//     dot segments, doubled slashes, backslashes, case, over-long paths);
//   - no client-sent x-sluice-* header (any name, any case) or underscore variant
//     of an identity header reaches an upstream;
//   - slow headers are cut off, oversized headers get 431, X-Forwarded-For from the
//     client is not trusted, and the bootstrap carries an overload manager with a
//     global connection limit (so Envoy does not warn that there is none);
//   - the shipped bootstrap keeps Envoy's admin on loopback.
// Requests go over raw sockets where Node's HTTP client would clean the path up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { adsBootstrap } from '../../envoy/bootstrap.ts';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { meansAdmin, rawGet, type RawResponse } from '../helpers/raw-http.ts';
import { fetchVia, startHttpUpstream, type EchoBody, type HttpUpstream } from '../helpers/upstream.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');

/** Short enough to see in a test; the default is 10 s. */
const HEADERS_TIMEOUT_MS = 1_000;
/**
 * Below Node's own 16 KiB header limit, so a 431 can only come from Envoy (the
 * test upstream is a Node server); the default is 60 KiB.
 */
const MAX_HEADERS_KB = 8;

let gw: Gateway;
let open: HttpUpstream;

function state(): StateInput {
  return {
    revision: 1,
    upstreams: [{ name: 'open', endpoints: [{ host: '127.0.0.1', port: open.port }] }],
    routes: [
      // The "strong" routes: anything meant for /api/admin is refused here, in any case
      // (Envoy matches case-sensitively unless a route sets ignore_case).
      { name: 'admin-tree', match: { path: { prefix: '/api/admin/', ignore_case: true } }, action: { direct_response: { status: 403, body: 'admin' } } },
      { name: 'admin-root', match: { path: { exact: '/api/admin', ignore_case: true } }, action: { direct_response: { status: 403, body: 'admin' } } },
      // The weak route: no auth, echoes the path the upstream saw.
      { name: 'open', match: { path: { prefix: '/' } }, action: { upstream: 'open' } },
    ],
  };
}

before(async () => {
  open = await startHttpUpstream({ name: 'open' });
  gw = await startGateway({
    envoys: [{ nodeId: 'edge-sotw' }],
    translateOptions: { edge: { requestHeadersTimeoutMs: HEADERS_TIMEOUT_MS, maxRequestHeadersKb: MAX_HEADERS_KB } },
  });
  await gw.apply(state());
});

after(async () => {
  await gw?.stop();
  await open?.close();
});

function port(): number {
  return gw.envoys[0]!.port;
}

/** One raw request to this test's Envoy (test/helpers/raw-http.ts). */
function rawRequest(target: string, lines: string[] = [], toPort = port()): Promise<RawResponse> {
  return rawGet(toPort, target, lines, { host: 'edge.test', timeoutMs: 10_000 });
}

function echoOf(res: RawResponse): EchoBody | undefined {
  if (res.headers['x-upstream'] === undefined) return undefined;
  return JSON.parse(res.body) as EchoBody;
}

// ---- item 4: path tricks ------------------------------------------------------------

const longSegment = 'a'.repeat(MAX_HEADERS_KB * 1024 + 100);
const PATH_TRICKS: string[] = [
  '/api/admin/users',
  '/api/admin',
  // Encoded slashes and backslashes, both cases.
  '/api/admin%2Fusers',
  '/api/admin%2fusers',
  '/api%2Fadmin%2Fusers',
  '/api/admin%5Cusers',
  '/api/admin%5cusers',
  '/api%5cadmin/users',
  // Raw backslashes.
  '/api\\admin\\users',
  '/api/admin\\users',
  '\\api\\admin',
  // Dot segments, plain and encoded.
  '/api/./admin/users',
  '/api/x/../admin/users',
  '/x/../api/admin/users',
  '/./api/admin/users',
  '/api/%2e/admin/users',
  '/x/%2e%2e/api/admin/users',
  '/x/%2E%2E/api/admin/users',
  '/x/.%2e/api/admin/users',
  '/api/admin%2e',
  // Trailing dot segments.
  '/api/admin/.',
  '/api/admin/users/..',
  '/api/admin/users/%2e%2e',
  '/api/admin/x/../..',
  // Doubled slashes.
  '//api/admin/users',
  '/api//admin/users',
  '/api/admin//users',
  '///api///admin',
  '/api/Admin%2Fusers',
  // Escaped letters that spell admin.
  '/api/%61dmin/users',
  // Over-long: past the header limit, and long but within it.
  `/api/admin/${longSegment}`,
  `/${longSegment}/../api/admin/users`,
  `/${'x/'.repeat(500)}${'../'.repeat(500)}api/admin/users`,
  // Query strings do not change the route.
  '/api/admin?x=/',
  '/api/admin%3F/users',
];

/**
 * Paths differ in case only. Envoy matches case-sensitively (RFC 3986), so these
 * would reach the open route; the admin routes opt into case-insensitive matching
 * (match.path.ignore_case, a route option in model/route.ts, not a listener setting).
 */
const CASE_TRICKS: string[] = ['/API/admin/users', '/Api/Admin/users', '/api/ADMIN', '/api/%41DMIN/users'];

describe('path tricks never reach a weaker route', () => {
  for (const trick of [...PATH_TRICKS, ...CASE_TRICKS]) {
    const label = trick.length > 80 ? `${trick.slice(0, 40)}…(${trick.length} chars)` : trick;
    test(label, async () => {
      const res = await rawRequest(trick);
      const echo = echoOf(res);
      const where = `${label} -> ${res.status} ${res.body.slice(0, 120)}`;
      if (echo) {
        // It reached the open route: only fine when it does not mean /api/admin.
        assert.ok(!meansAdmin(echo.path), `upstream saw ${echo.path.slice(0, 120)} (${where})`);
        assert.ok(!meansAdmin(trick) || echo.path !== trick, where);
      } else if (meansAdmin(trick)) {
        // Refused by the admin route, or rejected outright (400, 404, 431); never a success.
        assert.ok(res.status === 403 || res.status === 400 || res.status === 404 || res.status === 431, where);
        if (res.status === 403) assert.equal(res.body, 'admin', where);
      }
    });
  }

  test('encoded slashes are rejected with 400 (path_with_escaped_slashes_action REJECT_REQUEST)', async () => {
    for (const trick of ['/api/admin%2Fusers', '/files/a%2fb', '/x%5Cy', '/x%5cy']) {
      assert.equal((await rawRequest(trick)).status, 400, trick);
    }
  });

  test('an over-long path gets 431', async () => {
    const before = open.requests;
    assert.equal((await rawRequest(`/api/admin/${longSegment}`)).status, 431);
    assert.equal((await rawRequest(`/${longSegment}`)).status, 431);
    assert.equal(open.requests, before);
  });
});

// ---- item 5: identity headers -------------------------------------------------------

describe('client-sent identity headers never reach an upstream', () => {
  test('underscore variants of identity headers are rejected (headers_with_underscores_action REJECT_REQUEST)', async () => {
    for (const name of ['x_sluice_consumer', 'x_user_id', 'X_Consumer_Id', 'x-sluice_scopes', 'x_sluice-role']) {
      const before = open.requests;
      const res = await rawRequest('/anything', [`${name}: root`]);
      assert.equal(res.status, 400, name);
      assert.equal(open.requests, before, `${name}: the upstream was called`);
    }
  });

  test('any x-sluice-* header, in any case, is stripped (generated names)', async () => {
    // Deterministic seed: the same names every run; 25 requests x up to 6 headers.
    const suffix = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,23}$/);
    const caseMix = fc.array(fc.boolean(), { minLength: 40, maxLength: 40 });
    const header = fc.tuple(suffix, caseMix).map(([tail, upper]) =>
      [...`x-sluice-${tail}`].map((ch, i) => (upper[i] ? ch.toUpperCase() : ch)).join(''),
    );
    const samples = fc.sample(fc.uniqueArray(header, { minLength: 1, maxLength: 6, selector: (h) => h.toLowerCase() }), { numRuns: 25, seed: 8_005 });
    for (const names of samples) {
      for (const target of ['/anything', '/api/x']) {
        const res = await rawRequest(target, [...names.map((n) => `${n}: spoofed`), 'x-ordinary: kept']);
        assert.equal(res.status, 200, `${names.join(', ')}: ${res.status} ${res.body.slice(0, 200)}`);
        const seen = echoOf(res)!.headers;
        const leaked = Object.keys(seen).filter((h) => h.startsWith('x-sluice-'));
        assert.deepEqual(leaked, [], `sent ${names.join(', ')}`);
        assert.equal(seen['x-ordinary'], 'kept');
      }
    }
  });

  test('x-user-id and x-consumer-id are stripped in any case', async () => {
    const res = await rawRequest('/anything', ['X-User-Id: admin', 'X-CONSUMER-ID: root', 'X-Sluice-Consumer: root']);
    assert.equal(res.status, 200);
    const seen = echoOf(res)!.headers;
    for (const name of ['x-user-id', 'x-consumer-id', 'x-sluice-consumer']) assert.equal(seen[name], undefined, name);
  });
});

// ---- item 6: slowloris, limits, X-Forwarded-For --------------------------------------

describe('resource limits', () => {
  test('a client that sends headers slowly is cut off by request_headers_timeout', async () => {
    // Trickles one header byte every 100 ms, never finishing, for at most 20 s
    // (20x the configured timeout): Envoy must close the connection first.
    const outcome = await new Promise<{ closedByEnvoy: boolean; response: string }>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: port() });
      const chunks: Buffer[] = [];
      let trickle: NodeJS.Timeout | undefined;
      const giveUp = setTimeout(() => finish(false), 20_000);
      const finish = (closedByEnvoy: boolean): void => {
        clearInterval(trickle);
        clearTimeout(giveUp);
        socket.destroy();
        resolve({ closedByEnvoy, response: Buffer.concat(chunks).toString('latin1') });
      };
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => finish(true));
      socket.on('close', () => finish(true));
      socket.on('connect', () => {
        socket.write('GET /slow HTTP/1.1\r\nhost: edge.test\r\nx-slow: ');
        trickle = setInterval(() => socket.write('a'), 100);
      });
    });
    assert.ok(outcome.closedByEnvoy, 'Envoy kept a slow-header connection open');
    if (outcome.response.length > 0) assert.match(outcome.response, /^HTTP\/1\.1 408 /);
  });

  test('oversized request headers get 431', async () => {
    const before = open.requests;
    const res = await rawRequest('/anything', [`x-big: ${'b'.repeat(MAX_HEADERS_KB * 1024)}`]);
    assert.equal(res.status, 431);
    assert.equal(res.headers['x-upstream'], undefined, 'the 431 came from the upstream');
    assert.equal(open.requests, before);
    // Many small headers count together.
    const many = Array.from({ length: MAX_HEADERS_KB + 2 }, (_, i) => `x-part-${i}: ${'p'.repeat(1000)}`);
    assert.equal((await rawRequest('/anything', many)).status, 431);
    assert.equal(open.requests, before);
    // Just under the limit is fine.
    assert.equal((await rawRequest('/anything', [`x-big: ${'b'.repeat((MAX_HEADERS_KB - 1) * 1024)}`])).status, 200);
  });

  test('a client-supplied X-Forwarded-For does not change the address the upstream sees', async () => {
    // The address Envoy records for this client without any X-Forwarded-For. (For a
    // loopback peer Envoy writes its own host address, so it is looked up, not assumed.)
    const plain = await seenHeaders(port(), {});
    const peer = String(plain['x-forwarded-for']);
    assert.match(peer, /^[0-9a-f.:]+$/i, `x-forwarded-for ${peer}`);
    // The TCP peer (this test connects from 127.0.0.1).
    assert.equal(plain['x-envoy-external-address'], '127.0.0.1');
    const spoofed = await seenHeaders(port(), { 'x-forwarded-for': '10.9.8.7, 203.0.113.7', 'x-envoy-external-address': '203.0.113.7', 'x-envoy-internal': 'true' });
    const hops = String(spoofed['x-forwarded-for']).split(',').map((h) => h.trim());
    assert.equal(hops.at(-1), peer, `x-forwarded-for ${spoofed['x-forwarded-for']}`);
    assert.equal(spoofed['x-envoy-external-address'], '127.0.0.1');
    assert.equal(spoofed['x-envoy-internal'], undefined);
  });

  test('a client cannot set Envoy control headers (x-envoy-upstream-rq-timeout-ms)', async () => {
    // The open route has no timeout; a client-set 1 ms timeout would answer 504.
    const res = await fetchVia(port(), '/delay/50', { headers: { 'x-envoy-upstream-rq-timeout-ms': '1', 'x-envoy-max-retries': '5' } });
    assert.equal(res.status, 200);
  });

  test('the bootstrap has an overload manager with a global connection limit, and Envoy does not warn', async () => {
    const envoy = gw.envoys[0]!.handle;
    const dump = JSON.stringify(await envoy.configDump('mask=bootstrap'));
    assert.match(dump, /envoy\.resource_monitors\.global_downstream_max_connections/);
    assert.match(dump, /"max_active_downstream_connections":"50000"/);
    const log = readFileSync(envoy.logFile, 'utf8');
    assert.doesNotMatch(log, /global downstream connection limit|no configured limit to the number of allowed active downstream connections/i);
  });
});

async function seenHeaders(toPort: number, headers: Record<string, string>): Promise<EchoBody['headers']> {
  const res = await fetchVia(toPort, '/whoami', { headers });
  assert.equal(res.status, 200, res.body.slice(0, 200));
  return (JSON.parse(res.body) as EchoBody).headers;
}

describe('behind one trusted proxy (xffTrustedHops 1)', () => {
  let behind: Gateway;

  before(async () => {
    behind = await startGateway({ envoys: [{ nodeId: 'edge-behind-lb' }], translateOptions: { edge: { xffTrustedHops: 1 } } });
    await behind.apply(state());
  });

  after(async () => {
    await behind?.stop();
  });

  test('the client address is the last X-Forwarded-For hop, and a private address is still not internal', async () => {
    // What the trusted proxy appended is believed; what the client put before it is not.
    const seen = await seenHeaders(behind.envoys[0]!.port, { 'x-forwarded-for': '203.0.113.50, 10.1.2.3', 'x-envoy-internal': 'true' });
    assert.equal(seen['x-envoy-external-address'], '10.1.2.3');
    // 10.1.2.3 is RFC 1918, which Envoy treats as internal by default (trusting its
    // x-envoy-* headers); at Sluice's edge nothing is internal.
    assert.equal(seen['x-envoy-internal'], undefined);
    const timeout = await fetchVia(behind.envoys[0]!.port, '/delay/50', { headers: { 'x-forwarded-for': '10.1.2.3', 'x-envoy-upstream-rq-timeout-ms': '1' } });
    assert.equal(timeout.status, 200, 'a client-set x-envoy-upstream-rq-timeout-ms was obeyed');
  });
});

// ---- item 7: the shipped bootstrap -------------------------------------------------------

describe('the shipped Envoy bootstrap', () => {
  const file = path.join(repoRoot, 'deploy/envoy-bootstrap.yaml');

  test('binds the admin API to loopback and is what adsBootstrap generates', () => {
    const shipped = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const admin = shipped.admin as { address: { socket_address: { address: string } } };
    assert.equal(admin.address.socket_address.address, '127.0.0.1');
    const generated = adsBootstrap({ nodeId: 'envoy-compose', nodeCluster: 'default', adsHost: 'control-plane', adsPort: 18000, adminPort: 9901 });
    assert.deepEqual(shipped.admin, generated.admin);
    assert.deepEqual(shipped.overload_manager, generated.overload_manager);
  });

  // Envoy's own validation of this file (it names certificate files, so it needs
  // them in place) is in test/e2e/xds-tls.test.ts.
});
