// translate() end to end: one State, translated by Sluice and served over ADS to two
// real Envoys (one state-of-the-world, one delta), which proxy to real HTTP
// upstreams. Every match kind and action is checked from the client's side.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type Gateway, type GatewayEnvoy, type StateInput } from '../helpers/gateway.ts';
import { startLoad, sharePercent } from '../helpers/load.ts';

import { fetchVia, startHttpUpstream, type EchoBody, type FetchResult, type HttpUpstream } from '../helpers/upstream.ts';

const UPSTREAMS = ['a', 'b', 'fallback', 'canary', 'shadow', 'flaky', 'shop', 'wild'] as const;
type UpstreamName = (typeof UPSTREAMS)[number];

let gw: Gateway;
const up = {} as Record<UpstreamName, HttpUpstream>;

function routes(): StateInput['routes'] {
  return [
    // Catch-all: anything no other route takes.
    { name: 'catch-all', match: { path: { prefix: '/' } }, action: { upstream: 'fallback' } },
    // Path kinds.
    { name: 'prefix-api', match: { path: { prefix: '/api/' } }, action: { upstream: 'a' } },
    { name: 'exact-health', match: { path: { exact: '/api/health' } }, action: { upstream: 'b' } },
    { name: 'regex-items', match: { path: { regex: '/items/[0-9]+' } }, action: { upstream: 'b' } },
    // Methods: the narrower route (with methods) is tried first on the same path.
    { name: 'method-any', match: { path: { prefix: '/m/' } }, action: { upstream: 'a' } },
    { name: 'method-write', match: { path: { prefix: '/m/' }, methods: ['POST', 'PUT'] }, action: { upstream: 'b' } },
    // Header matchers.
    { name: 'hdr-exact', match: { path: { prefix: '/hx/' }, headers: [{ name: 'x-tier', exact: 'gold' }] }, action: { upstream: 'b' } },
    { name: 'hdr-prefix', match: { path: { prefix: '/hp/' }, headers: [{ name: 'x-client', prefix: 'mobile-' }] }, action: { upstream: 'b' } },
    { name: 'hdr-regex', match: { path: { prefix: '/hr/' }, headers: [{ name: 'x-build', regex: 'v[0-9]+\\.[0-9]+' }] }, action: { upstream: 'b' } },
    { name: 'hdr-present', match: { path: { prefix: '/hpr/' }, headers: [{ name: 'x-trace', present: true }] }, action: { upstream: 'b' } },
    { name: 'hdr-invert', match: { path: { prefix: '/hi/' }, headers: [{ name: 'x-debug', exact: '1', invert: true }] }, action: { upstream: 'b' } },
    { name: 'hdr-absent', match: { path: { prefix: '/hna/' }, headers: [{ name: 'x-debug', present: true, invert: true }] }, action: { upstream: 'b' } },
    // Query parameter matchers.
    { name: 'query-exact', match: { path: { prefix: '/q/' }, query: [{ name: 'v', exact: '2' }] }, action: { upstream: 'b' } },
    { name: 'query-regex', match: { path: { prefix: '/qr/' }, query: [{ name: 'id', regex: '[0-9]+' }] }, action: { upstream: 'b' } },
    { name: 'query-present', match: { path: { prefix: '/qp/' }, query: [{ name: 'debug', present: true }] }, action: { upstream: 'b' } },
    // Host-based virtual hosts.
    { name: 'host-shop', hosts: ['shop.example.com'], match: { path: { prefix: '/' } }, action: { upstream: 'shop' } },
    { name: 'host-wild', hosts: ['*.example.com'], match: { path: { prefix: '/' } }, action: { upstream: 'wild' } },
    // Ordering: the longer prefix wins; an explicit priority beats length.
    { name: 'order-general', match: { path: { prefix: '/p/' } }, action: { upstream: 'a' } },
    { name: 'order-special', match: { path: { prefix: '/p/special/' } }, action: { upstream: 'b' } },
    { name: 'prio-high', priority: 5, match: { path: { prefix: '/o/' } }, action: { upstream: 'b' } },
    { name: 'prio-low', match: { path: { prefix: '/o/special/' } }, action: { upstream: 'a' } },
    // Split and canaries.
    { name: 'split', match: { path: { prefix: '/split/' } }, action: { split: [{ upstream: 'a', weight: 70 }, { upstream: 'b', weight: 30 }] } },
    {
      name: 'canary-header',
      match: { path: { prefix: '/canary-h/' } },
      action: { canary: { primary: 'a', canary: 'canary', header: { name: 'x-canary', value: 'yes' } } },
    },
    {
      name: 'canary-cookie',
      match: { path: { prefix: '/canary-c/' } },
      action: { canary: { primary: 'a', canary: 'canary', cookie: { name: 'beta', value: 'on' } } },
    },
    // Mirror.
    { name: 'mirror', match: { path: { prefix: '/mirror/' } }, action: { upstream: 'a' }, mirror: { upstream: 'shadow' } },
    // Rewrites.
    { name: 'rewrite-prefix', match: { path: { prefix: '/old/' } }, action: { upstream: 'a' }, rewrite: { prefix: '/new/' } },
    {
      name: 'rewrite-regex',
      match: { path: { regex: '/users/[0-9]+/profile' } },
      action: { upstream: 'a' },
      rewrite: { regex: { pattern: '^/users/([0-9]+)/profile$', substitution: '/profiles/\\1' } },
    },
    { name: 'rewrite-host', match: { path: { prefix: '/hostrw/' } }, action: { upstream: 'a' }, rewrite: { host: 'internal.svc.local' } },
    // Timeout and retries.
    { name: 'timeout', match: { path: { prefix: '/delay/' } }, action: { upstream: 'a' }, timeout_ms: 200 },
    { name: 'retries', match: { path: { prefix: '/status/' } }, action: { upstream: 'flaky' }, retries: { on: ['5xx'], count: 2 } },
    // Header mutations.
    {
      name: 'req-headers',
      match: { path: { prefix: '/reqh/' } },
      action: { upstream: 'a' },
      request_headers: { add: [{ name: 'x-added', value: 'yes' }, { name: 'x-tag', value: 'gw', append: true }], remove: ['x-secret'] },
    },
    {
      name: 'resp-headers',
      match: { path: { prefix: '/resph/' } },
      action: { upstream: 'a' },
      response_headers: { add: [{ name: 'x-resp', value: 'added' }], remove: ['x-upstream'] },
    },
    // Non-forwarding actions.
    { name: 'direct', match: { path: { exact: '/direct' } }, action: { direct_response: { status: 418, body: 'short and stout\n' } } },
    { name: 'redirect-perm', match: { path: { prefix: '/moved' } }, action: { redirect: { path: '/new-home', status: 301 } } },
    { name: 'redirect-host', match: { path: { prefix: '/elsewhere' } }, action: { redirect: { host: 'example.org' } } },
  ];
}

function state(revision: number): StateInput {
  return {
    revision,
    upstreams: UPSTREAMS.map((name) => ({ name, endpoints: [{ host: '127.0.0.1', port: up[name].port }] })),
    routes: routes(),
  };
}

before(async () => {
  for (const name of UPSTREAMS) up[name] = await startHttpUpstream({ name });
  gw = await startGateway({ envoys: [{ nodeId: 'tr-sotw' }, { nodeId: 'tr-delta', delta: true }] });
  await gw.apply(state(1));
});

after(async () => {
  await gw?.stop();
  await Promise.all(Object.values(up).map((u) => u.close()));
});

// ---- the table ------------------------------------------------------------------

interface Row {
  name: string;
  /** A known bug, with the reason; the row stays in the table. */
  skip?: string;
  req: { method?: string; path: string; host?: string; headers?: Record<string, string>; query?: Record<string, string> };
  expect: {
    status: number;
    /** Which upstream answered (x-upstream, else the echo body). */
    upstream?: UpstreamName;
    /** Path (with query) the upstream saw. */
    path?: string;
    /** Request headers the upstream saw; null = absent. */
    seen?: Record<string, string | null>;
    /** Response headers the client got; null = absent. */
    headers?: Record<string, string | null>;
    body?: string;
  };
}

const rows: Row[] = [
  // Path kinds.
  { name: 'prefix match', req: { path: '/api/users' }, expect: { status: 200, upstream: 'a', path: '/api/users' } },
  { name: 'exact match beats a prefix', req: { path: '/api/health' }, expect: { status: 200, upstream: 'b' } },
  { name: 'exact match is exact', req: { path: '/api/health/deep' }, expect: { status: 200, upstream: 'a' } },
  { name: 'regex match', req: { path: '/items/42' }, expect: { status: 200, upstream: 'b', path: '/items/42' } },
  { name: 'regex matches the whole path', req: { path: '/items/42x' }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'regex ignores the query string', req: { path: '/items/7', query: { page: '2' } }, expect: { status: 200, upstream: 'b', path: '/items/7?page=2' } },
  { name: 'catch-all', req: { path: '/nothing/here' }, expect: { status: 200, upstream: 'fallback' } },
  // Methods.
  { name: 'method: GET takes the general route', req: { path: '/m/x' }, expect: { status: 200, upstream: 'a' } },
  { name: 'method: POST takes the method route', req: { method: 'POST', path: '/m/x' }, expect: { status: 200, upstream: 'b' } },
  { name: 'method: PUT takes the method route', req: { method: 'PUT', path: '/m/x' }, expect: { status: 200, upstream: 'b' } },
  { name: 'method: DELETE takes the general route', req: { method: 'DELETE', path: '/m/x' }, expect: { status: 200, upstream: 'a' } },
  // Headers.
  { name: 'header exact: match', req: { path: '/hx/1', headers: { 'x-tier': 'gold' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'header exact: other value', req: { path: '/hx/1', headers: { 'x-tier': 'golden' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header exact: absent', req: { path: '/hx/1' }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header prefix: match', req: { path: '/hp/1', headers: { 'x-client': 'mobile-ios' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'header prefix: no match', req: { path: '/hp/1', headers: { 'x-client': 'desktop-mobile-' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header regex: match', req: { path: '/hr/1', headers: { 'x-build': 'v12.3' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'header regex: whole value only', req: { path: '/hr/1', headers: { 'x-build': 'v12.3-rc' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header present: present', req: { path: '/hpr/1', headers: { 'x-trace': '' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'header present: absent', req: { path: '/hpr/1' }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header invert: absent matches', req: { path: '/hi/1' }, expect: { status: 200, upstream: 'b' } },

  { name: 'header invert: other value matches', req: { path: '/hi/1', headers: { 'x-debug': '0' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'header present+invert: absent matches', req: { path: '/hna/1' }, expect: { status: 200, upstream: 'b' } },
  { name: 'header present+invert: present excludes', req: { path: '/hna/1', headers: { 'x-debug': '0' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'header invert: the value excludes', req: { path: '/hi/1', headers: { 'x-debug': '1' } }, expect: { status: 200, upstream: 'fallback' } },
  // Query parameters.
  { name: 'query exact: match', req: { path: '/q/1', query: { v: '2' } }, expect: { status: 200, upstream: 'b', path: '/q/1?v=2' } },
  { name: 'query exact: other value', req: { path: '/q/1', query: { v: '3' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'query exact: absent', req: { path: '/q/1' }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'query regex: match', req: { path: '/qr/1', query: { x: 'y', id: '123' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'query regex: no match', req: { path: '/qr/1', query: { id: '12a' } }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'query present: match', req: { path: '/qp/1', query: { debug: 'true' } }, expect: { status: 200, upstream: 'b' } },
  { name: 'query present: absent', req: { path: '/qp/1', query: { debugx: '1' } }, expect: { status: 200, upstream: 'fallback' } },
  // Virtual hosts.
  { name: 'host: exact domain', req: { path: '/api/users', host: 'shop.example.com' }, expect: { status: 200, upstream: 'shop' } },
  { name: 'host: port is ignored', req: { path: '/', host: 'shop.example.com:8443' }, expect: { status: 200, upstream: 'shop' } },
  { name: 'host: wildcard domain', req: { path: '/api/users', host: 'blog.example.com' }, expect: { status: 200, upstream: 'wild' } },
  { name: 'host: other hosts use *', req: { path: '/api/users', host: 'example.net' }, expect: { status: 200, upstream: 'a' } },
  // Ordering.
  { name: 'order: the longer prefix wins', req: { path: '/p/special/1' }, expect: { status: 200, upstream: 'b' } },
  { name: 'order: the shorter prefix takes the rest', req: { path: '/p/other' }, expect: { status: 200, upstream: 'a' } },
  { name: 'order: priority beats a longer prefix', req: { path: '/o/special/1' }, expect: { status: 200, upstream: 'b' } },
  // Canaries (weight 0: only opted-in requests reach the canary).
  { name: 'header canary: opted in', req: { path: '/canary-h/x', headers: { 'x-canary': 'yes' } }, expect: { status: 200, upstream: 'canary' } },
  { name: 'header canary: other value', req: { path: '/canary-h/x', headers: { 'x-canary': 'no' } }, expect: { status: 200, upstream: 'a' } },
  { name: 'header canary: not opted in', req: { path: '/canary-h/x' }, expect: { status: 200, upstream: 'a' } },
  { name: 'cookie canary: only cookie', req: { path: '/canary-c/x', headers: { cookie: 'beta=on' } }, expect: { status: 200, upstream: 'canary' } },
  { name: 'cookie canary: among others', req: { path: '/canary-c/x', headers: { cookie: 'sid=abc; beta=on; theme=dark' } }, expect: { status: 200, upstream: 'canary' } },
  { name: 'cookie canary: other value', req: { path: '/canary-c/x', headers: { cookie: 'beta=off' } }, expect: { status: 200, upstream: 'a' } },
  { name: 'cookie canary: name is a suffix', req: { path: '/canary-c/x', headers: { cookie: 'xbeta=on' } }, expect: { status: 200, upstream: 'a' } },
  { name: 'cookie canary: no cookie', req: { path: '/canary-c/x' }, expect: { status: 200, upstream: 'a' } },
  // Rewrites.
  { name: 'prefix rewrite', req: { path: '/old/thing', query: { q: '1' } }, expect: { status: 200, upstream: 'a', path: '/new/thing?q=1' } },
  { name: 'regex rewrite', req: { path: '/users/42/profile' }, expect: { status: 200, upstream: 'a', path: '/profiles/42' } },
  { name: 'host rewrite', req: { path: '/hostrw/x' }, expect: { status: 200, upstream: 'a', seen: { host: 'internal.svc.local' } } },
  // Timeout.
  { name: 'route timeout answers 504', req: { path: '/delay/1000' }, expect: { status: 504 } },
  { name: 'route timeout lets a fast answer through', req: { path: '/delay/10' }, expect: { status: 200, upstream: 'a' } },
  // Header mutations.
  {
    name: 'request headers: add and remove',
    req: { path: '/reqh/x', headers: { 'x-secret': 'hunter2', 'x-tag': 'client', 'x-added': 'client' } },
    expect: { status: 200, upstream: 'a', seen: { 'x-added': 'yes', 'x-secret': null, 'x-tag': 'client, gw' } },
  },
  {
    name: 'response headers: add and remove',
    req: { path: '/resph/x' },
    expect: { status: 200, upstream: 'a', headers: { 'x-resp': 'added', 'x-upstream': null } },
  },
  // Direct responses and redirects.
  { name: 'direct response', req: { path: '/direct' }, expect: { status: 418, body: 'short and stout\n' } },
  { name: 'direct response is exact', req: { path: '/direct/x' }, expect: { status: 200, upstream: 'fallback' } },
  { name: 'redirect: path, 301', req: { path: '/moved/x' }, expect: { status: 301, headers: { location: 'http://gw.test/new-home' } } },
  { name: 'redirect: host, default 302', req: { path: '/elsewhere/x' }, expect: { status: 302, headers: { location: 'http://example.org/elsewhere/x' } } },
];

function withQuery(path: string, query: Record<string, string> | undefined): string {
  if (!query) return path;
  return `${path}?${new URLSearchParams(query).toString()}`;
}

function echo(res: FetchResult): EchoBody | undefined {
  try {
    return JSON.parse(res.body) as EchoBody;
  } catch {
    return undefined;
  }
}

async function check(envoy: GatewayEnvoy, row: Row): Promise<void> {
  const { req, expect } = row;
  const path = withQuery(req.path, req.query);
  // Redirects need a known Host to compare the location with.
  const host = req.host ?? (expect.status === 301 ? 'gw.test' : undefined);
  const res = await fetchVia(envoy.port, path, { method: req.method, host, headers: req.headers });
  const where = `${envoy.nodeId}: ${req.method ?? 'GET'} ${path}${host ? ` (host ${host})` : ''} -> ${res.status} ${JSON.stringify(res.headers)} ${res.body.slice(0, 300)}`;
  assert.equal(res.status, expect.status, where);
  const body = echo(res);
  if (expect.upstream !== undefined) {
    assert.equal(res.headers['x-upstream'] ?? body?.upstream, expect.upstream, where);
  }
  if (expect.path !== undefined) assert.equal(body?.path, expect.path, where);
  for (const [name, value] of Object.entries(expect.seen ?? {})) {
    assert.equal(body?.headers[name] ?? null, value, `upstream saw ${name}: ${where}`);
  }
  for (const [name, value] of Object.entries(expect.headers ?? {})) {
    assert.equal(res.headers[name] ?? null, value, `response header ${name}: ${where}`);
  }
  if (expect.body !== undefined) assert.equal(res.body, expect.body, where);
  if (expect.upstream !== undefined && body) assert.equal(body.method, req.method ?? 'GET', where);
}

for (const row of rows) {
  test(row.name, { skip: row.skip }, async () => {
    for (const envoy of gw.envoys) await check(envoy, row);
  });
}

// ---- behaviours that need more than one request -----------------------------------

test('both Envoys (SotW and delta) hold the revision', () => {
  const nodes = gw.registry.list();
  assert.deepEqual(nodes.map((n) => [n.nodeId, n.protocol, n.syncedRevision, n.lastNack]), [
    ['tr-delta', 'delta', 1, undefined],
    ['tr-sotw', 'sotw', 1, undefined],
  ]);
});

test('weighted split: both upstreams serve, roughly by weight (70/30)', async () => {
  for (const envoy of gw.envoys) {
    const result = await startLoad({ port: envoy.port, path: '/split/x', requests: 200, concurrency: 4 }).result;
    assert.equal(result.failed, 0, `${envoy.nodeId} failures: ${JSON.stringify([...result.failures])}`);
    const a = sharePercent(result, 'a');
    const b = sharePercent(result, 'b');
    assert.equal(Math.round(a + b), 100, `${envoy.nodeId}: only a and b: ${JSON.stringify([...result.byUpstream])}`);
    // Binomial(200, 0.7): sd ~3.2 points; 15 points is > 4.5 sd. Exact chance a
    // correct split misses: 3.0e-6 per Envoy, 6e-6 for both, under 1 in 10,000
    // runs (binomialMissRate(200, 0.7, 0.15) in test/helpers/stats.ts).
    assert.ok(a >= 55 && a <= 85, `${envoy.nodeId}: a got ${a}% (want ~70)`);
  }
});

test('mirror: the shadow upstream gets a copy, the client sees the primary', async () => {
  for (const envoy of gw.envoys) {
    const shadowBefore = up.shadow.requests;
    const primaryBefore = up.a.requests;
    for (let i = 0; i < 5; i++) {
      const res = await fetchVia(envoy.port, `/mirror/${i}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-upstream'], 'a');
      assert.equal(echo(res)?.path, `/mirror/${i}`);
    }
    assert.equal(up.a.requests - primaryBefore, 5);
    await envoy.handle.waitFor(() => up.shadow.requests - shadowBefore === 5, 5_000, `${envoy.nodeId}: 5 mirrored requests (have ${up.shadow.requests - shadowBefore})`);
  }
});

test('retries: a 503 is tried 1 + count times, and the policy is in Envoy config', async () => {
  for (const envoy of gw.envoys) {
    const before = up.flaky.requests;
    const res = await fetchVia(envoy.port, '/status/503');
    assert.equal(res.status, 503);
    assert.equal(res.headers['x-upstream'], 'flaky');
    assert.equal(up.flaky.requests - before, 3, `${envoy.nodeId}: upstream requests for one client request`);
    // A success is not retried.
    const ok = up.flaky.requests;
    assert.equal((await fetchVia(envoy.port, '/status/200')).status, 200);
    assert.equal(up.flaky.requests - ok, 1);

    const dump = JSON.stringify(await envoy.handle.configDump('resource=dynamic_route_configs'));
    assert.match(dump, /"retry_on":"5xx"/);
    assert.match(dump, /"num_retries":2/);
  }
});

test('timeout: the config Envoy holds carries the route timeout', async () => {
  for (const envoy of gw.envoys) {
    const dump = JSON.stringify(await envoy.handle.configDump('resource=dynamic_route_configs'));
    assert.match(dump, /"timeout":"0\.200s"/);
  }
});

test('identity headers a client sends never reach the upstream on an auth:none route', async () => {
  const identity = {
    'x-user-id': 'admin',
    'x-consumer-id': 'root',
    'x-sluice-consumer': 'root',
    'x-sluice-scopes': 'admin',
    'x-sluice-credential': 'stolen',
  };
  for (const envoy of gw.envoys) {
    for (const path of ['/api/users', '/reqh/x', '/nothing']) {
      const res = await fetchVia(envoy.port, path, { headers: { ...identity, 'x-ordinary': 'kept' } });
      assert.equal(res.status, 200);
      const seen = echo(res)!.headers;
      for (const name of Object.keys(identity)) assert.equal(seen[name], undefined, `${envoy.nodeId} ${path}: ${name} reached the upstream`);
      assert.equal(seen['x-ordinary'], 'kept');
    }
  }
});

test('identity headers: any x-sluice-* header a client sends is stripped too', async () => {
  for (const envoy of gw.envoys) {
    const res = await fetchVia(envoy.port, '/api/users', { headers: { 'x-sluice-role': 'admin' } });
    assert.equal(res.status, 200);
    assert.equal(echo(res)!.headers['x-sluice-role'], undefined, `${envoy.nodeId}: x-sluice-role reached the upstream`);
  }
});

test('a changed State reaches both Envoys and changes what they serve', async () => {
  const next = state(2);
  next.routes = next.routes!.map((r) => (r.name === 'prefix-api' ? { ...r, action: { upstream: 'b' } } : r));
  await gw.apply(next);
  for (const envoy of gw.envoys) {
    const res = await fetchVia(envoy.port, '/api/users');
    assert.equal(res.headers['x-upstream'], 'b', envoy.nodeId);
  }
  await gw.apply(state(3));
  for (const envoy of gw.envoys) assert.equal((await fetchVia(envoy.port, '/api/users')).headers['x-upstream'], 'a');
});
