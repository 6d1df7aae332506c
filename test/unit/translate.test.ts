// translate(): State -> Envoy resources. Resources are decoded back with the codec
// and their fields asserted; a final check hands the whole output to the pinned
// Envoy binary in --mode validate (skipped when Envoy is not installed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DeclarativeConfigInput, type State, StateSchema, validateState } from '../../control-plane/src/model/index.ts';
import { type EnvoyResources, type TranslateOptions, type XdsResource, createTranslationCache, translate } from '../../control-plane/src/translate/index.ts';
import { decode, encode, packAny, unpackAny } from '../../control-plane/src/proto/codec.ts';
import type { Cluster, HttpConnectionManager, Listener } from '../../control-plane/src/proto/codec.ts';
import type { RouteConfiguration__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/RouteConfiguration.ts';
import type { Route__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/Route.ts';
import type { VirtualHost__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/VirtualHost.ts';
import type { Listener__Output } from '../../control-plane/src/proto/generated/envoy/config/listener/v3/Listener.ts';
import type { Cluster__Output } from '../../control-plane/src/proto/generated/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment__Output } from '../../control-plane/src/proto/generated/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { HttpConnectionManager__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { ExtAuthzPerRoute__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthzPerRoute.ts';
import type { ExtAuthz__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';
import type { CorsPolicy__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/cors/v3/CorsPolicy.ts';
import type { LocalRateLimit__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/local_ratelimit/v3/LocalRateLimit.ts';
import type { RateLimit__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ratelimit/v3/RateLimit.ts';
import type { HeaderMutation__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/header_mutation/v3/HeaderMutation.ts';
import type { UpstreamTlsContext__Output } from '../../control-plane/src/proto/generated/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import type { HttpProtocolOptions__Output } from '../../control-plane/src/proto/generated/envoy/extensions/upstreams/http/v3/HttpProtocolOptions.ts';

// ---- fixtures ------------------------------------------------------------------

const TEST_CA = `-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUaT2wZPCxU3DSU+GbIEj6nYfekWYwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOc2x1aWNlLXRlc3QtY2EwIBcNMjYxMTIzMDk0MjM1WhgPMjEy
NjEwMzAwOTQyMzVaMBkxFzAVBgNVBAMMDnNsdWljZS10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEigNf4u/k2mZZjlXpOpzmMGDhcAPWpNOFr+vnViy1
yLcfP6L9vW9jSnzagAzo+f72RNajSO8HkgVI5NDylJQ9qqNTMFEwHQYDVR0OBBYE
FBK0s9KFv2p3CsIGnYfHt6qi6r/NMB8GA1UdIwQYMBaAFBK0s9KFv2p3CsIGnYfH
t6qi6r/NMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhALU9Q3iJ
S11jwVyJm3V1jDU7NfZYdCbYdRG6qhMdYf4EAiEA8yUyv4CnwefOYWpiBopeUQDs
Zm1OUPnKjiaKwv++1S0=
-----END CERTIFICATE-----
`;

const OPTIONS: TranslateOptions = {
  listenerPort: 10080,
  authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: 9191 },
  ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: 9192, domain: 'sluice' },
};

/** A State using every feature the model has. */
function bigConfig(): DeclarativeConfigInput {
  return {
    upstreams: [
      {
        name: 'users',
        endpoints: [
          { host: '10.0.0.2', port: 8080, weight: 2 },
          { host: '10.0.0.1', port: 8080 },
        ],
        connect_timeout_ms: 2500,
        circuit_breakers: { max_connections: 100, max_pending_requests: 50, max_requests: 200, max_retries: 3 },
        outlier_detection: { consecutive_5xx: 5, interval_ms: 10_000, base_ejection_time_ms: 30_000, max_ejection_percent: 50 },
        health_check: { path: '/healthz', interval_ms: 5000, timeout_ms: 1500, healthy_threshold: 2, unhealthy_threshold: 3, expected_statuses: [200, 204, 205] },
      },
      {
        name: 'users-v2',
        endpoints: [{ host: 'localhost', port: 8081 }],
        protocol: 'http2',
        tls: { sni: 'users.internal', verify: { ca_pem: TEST_CA } },
        lb_policy: 'ring_hash',
        hash_key: { header: 'x-user' },
      },
      { name: 'orders', endpoints: [{ host: '::1', port: 9000 }], lb_policy: 'least_request', tls: { verify: {} }, health_check: { path: '/' } },
      { name: 'sessions', endpoints: [{ host: '10.0.1.1', port: 80 }], lb_policy: 'ring_hash', hash_key: { cookie: 'sid' } },
      { name: 'geo', endpoints: [{ host: '10.0.2.1', port: 80 }], lb_policy: 'ring_hash', hash_key: { source_ip: true } },
      { name: 'shadow', endpoints: [{ host: '10.0.3.1', port: 80 }], lb_policy: 'random' },
      { name: 'unused', endpoints: [{ host: '10.0.4.1', port: 80 }] },
    ],
    routes: [
      {
        name: 'users-list',
        match: {
          path: { prefix: '/users' },
          methods: ['GET'],
          headers: [
            { name: 'x-tenant', exact: 'acme' },
            { name: 'x-env', prefix: 'prod' },
            { name: 'x-trace', regex: '[0-9a-f]+' },
            { name: 'x-debug', present: true, invert: true },
          ],
          query: [
            { name: 'page', regex: '[0-9]+' },
            { name: 'view', exact: 'full' },
            { name: 'fields', present: true },
          ],
        },
        action: {
          canary: { primary: 'users', canary: 'users-v2', header: { name: 'x-canary', value: 'always' }, cookie: { name: 'canary', value: 'yes' }, weight: 10 },
        },
        mirror: { upstream: 'shadow', percent: 25 },
        rewrite: { prefix: '/v2/users', host: 'users.internal' },
        timeout_ms: 3000,
        retries: { on: ['5xx', 'connect-failure'], count: 3, per_try_timeout_ms: 1000, backoff_base_ms: 25, backoff_max_ms: 250 },
        request_headers: { add: [{ name: 'x-gateway', value: 'sluice 100%' }, { name: 'x-multi', value: 'a', append: true }], remove: ['x-internal'] },
        response_headers: { add: [{ name: 'x-served-by', value: 'sluice' }], remove: ['server'] },
        auth: { mode: 'jwt', scopes: ['users:read', 'profile'], jwt_providers: ['idp'] },
        rate_limits: ['per-route', 'per-consumer', 'per-ip', 'per-tenant'],
        cors: {
          allow_origins: ['https://app.example.com', { regex: 'https://.*\\.example\\.com' }],
          allow_methods: ['GET', 'POST'],
          allow_headers: ['authorization'],
          expose_headers: ['x-request-id'],
          max_age_s: 600,
          allow_credentials: true,
        },
      },
      {
        name: 'user-by-id',
        match: { path: { regex: '^/users/[0-9]+$' }, methods: ['PUT', 'GET'] },
        action: { split: [{ upstream: 'users', weight: 70 }, { upstream: 'users-v2', weight: 30 }] },
        rewrite: { regex: { pattern: '^/users/([0-9]+)$', substitution: '/v2/users/\\1' } },
        auth: { mode: 'api_key' },
      },
      { name: 'health', match: { path: { exact: '/healthz' } }, action: { direct_response: { status: 200, body: 'ok' } } },
      {
        name: 'old-docs',
        match: { path: { prefix: '/docs' } },
        action: { redirect: { scheme: 'https', host: 'docs.example.com', path: '/', status: 301 } },
      },
      { name: 'example-api', hosts: ['*.example.com'], match: { path: { prefix: '/' } }, action: { upstream: 'orders' }, auth: { mode: 'any' } },
      { name: 'sessions', hosts: ['api.example.com'], match: { path: { prefix: '/sessions' } }, action: { upstream: 'sessions' }, rate_limits: ['per-route'] },
      { name: 'geo', match: { path: { prefix: '/geo' } }, action: { split: [{ upstream: 'geo', weight: 100 }, { upstream: 'shadow', weight: 0 }] } },
    ],
    consumers: [{ name: 'acme', tags: ['gold'], metadata: { tier: 'gold' } }],
    credentials: [
      { name: 'acme-key', consumer: 'acme', kind: 'api_key' },
      { name: 'acme-jwt', consumer: 'acme', kind: 'jwt_subject', jwt: { provider: 'idp', subject: 'user-1' } },
    ],
    jwt_providers: [
      {
        name: 'idp',
        issuer: 'https://idp.example.com/',
        jwks_uri: 'https://idp.example.com/.well-known/jwks.json',
        audiences: ['sluice'],
        algorithms: ['RS256', 'ES256'],
        claims_to_headers: [
          { claim: 'sub', header: 'x-user-id' },
          { claim: 'org.id', header: 'x-org-id' },
        ],
      },
      { name: 'inline', issuer: 'inline', jwks: { keys: [{ kty: 'RSA', n: 'abc', e: 'AQAB' }] } },
    ],
    rate_limit_policies: [
      { name: 'per-route', key: ['route'], limit: { requests: 100, per: 'minute' }, burst: 20 },
      { name: 'per-consumer', key: ['consumer', 'route'], limit: { requests: 1000, per: 'hour' } },
      { name: 'per-ip', key: ['client_ip'], limit: { requests: 10, per: 'second' } },
      { name: 'per-tenant', key: [{ header: 'x-tenant' }], limit: { requests: 5000, per: 'day' }, algorithm: 'fixed_window' },
    ],
  };
}

function stateOf(config: DeclarativeConfigInput, revision = 1): State {
  const state = StateSchema.parse({ revision, ...config });
  assert.deepEqual(validateState(state), [], 'fixture must be a valid State');
  return state;
}

const upstream = (name: string) => ({ name, endpoints: [{ host: '10.1.0.1', port: 80 }] });

/** A small State: the given routes over upstreams a, b, c. */
function smallState(routes: DeclarativeConfigInput['routes'], extra: Partial<DeclarativeConfigInput> = {}): State {
  return stateOf({ upstreams: [upstream('a'), upstream('b'), upstream('c')], routes, ...extra });
}

// ---- decoding helpers ----------------------------------------------------------

function only(list: XdsResource[]): XdsResource {
  assert.equal(list.length, 1);
  return list[0]!;
}

function routeConfig(res: EnvoyResources): RouteConfiguration__Output {
  return decode('envoy.config.route.v3.RouteConfiguration', only(res.routes).value) as unknown as RouteConfiguration__Output;
}

function hcm(res: EnvoyResources): HttpConnectionManager__Output {
  const listener = decode('envoy.config.listener.v3.Listener', only(res.listeners).value) as unknown as Listener__Output;
  const filter = listener.filter_chains[0]!.filters[0]!;
  assert.equal(filter.name, 'envoy.filters.network.http_connection_manager');
  return unpackAny(filter.typed_config!) as unknown as HttpConnectionManager__Output;
}

function cluster(res: EnvoyResources, name: string): Cluster__Output {
  const found = res.clusters.find((c) => c.name === name);
  assert.ok(found, `cluster ${name}`);
  return decode('envoy.config.cluster.v3.Cluster', found.value) as unknown as Cluster__Output;
}

function vhost(rc: RouteConfiguration__Output, domain: string): VirtualHost__Output {
  const found = rc.virtual_hosts.find((v) => v.domains.includes(domain));
  assert.ok(found, `virtual host for ${domain}`);
  return found;
}

/** The Envoy routes named `name` in the `*` virtual host (or the given domain's). */
function routesNamed(res: EnvoyResources, name: string, domain = '*'): Route__Output[] {
  return vhost(routeConfig(res), domain).routes.filter((r) => r.name === name);
}

function routeNamed(res: EnvoyResources, name: string, domain = '*'): Route__Output {
  const routes = routesNamed(res, name, domain);
  assert.equal(routes.length, 1, `one Envoy route named ${name}`);
  return routes[0]!;
}

function perFilter<T>(route: Route__Output, filter: string): T | undefined {
  const any = route.typed_per_filter_config?.[filter];
  return any ? (unpackAny(any) as unknown as T) : undefined;
}

function names(res: EnvoyResources, domain = '*'): string[] {
  return vhost(routeConfig(res), domain).routes.map((r) => r.name);
}

// ---- tests ---------------------------------------------------------------------

describe('translate: resources', () => {
  const res = translate(stateOf(bigConfig()), OPTIONS);

  it('emits one listener and one route configuration named from the port', () => {
    assert.equal(only(res.listeners).name, 'sluice_http_10080');
    assert.equal(only(res.listeners).typeUrl, 'type.googleapis.com/envoy.config.listener.v3.Listener');
    assert.equal(only(res.routes).name, 'sluice_routes_10080');
    assert.equal(only(res.routes).typeUrl, 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration');
  });

  it('emits a cluster for every upstream (used or not) plus the service clusters, sorted by name', () => {
    assert.deepEqual(
      res.clusters.map((c) => c.name),
      ['sluice_authz', 'sluice_ratelimit', 'upstream_geo', 'upstream_orders', 'upstream_sessions', 'upstream_shadow', 'upstream_unused', 'upstream_users', 'upstream_users-v2'],
    );
    for (const c of res.clusters) assert.equal(c.typeUrl, 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
  });

  it('emits endpoints for the EDS (all-IP) upstreams only', () => {
    assert.deepEqual(
      res.endpoints.map((e) => e.name),
      ['upstream_geo', 'upstream_orders', 'upstream_sessions', 'upstream_shadow', 'upstream_unused', 'upstream_users'],
    );
    for (const e of res.endpoints) assert.equal(e.typeUrl, 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment');
  });

  it('versions each resource by the SHA-256 of its bytes', () => {
    for (const r of [...res.listeners, ...res.routes, ...res.clusters, ...res.endpoints]) {
      assert.match(r.version, /^[0-9a-f]{16}$/);
    }
  });

  it('produces messages that re-encode through the checked codec (no unknown fields)', () => {
    for (const r of res.clusters) encode('envoy.config.cluster.v3.Cluster', decode('envoy.config.cluster.v3.Cluster', r.value) as Cluster);
    for (const r of res.listeners) encode('envoy.config.listener.v3.Listener', decode('envoy.config.listener.v3.Listener', r.value) as Listener);
    const again = encode('envoy.config.route.v3.RouteConfiguration', routeConfig(res) as unknown as Parameters<typeof encode<'envoy.config.route.v3.RouteConfiguration'>>[1]);
    assert.ok(again.length > 0);
  });

  it('translates an empty State to a listener, an empty route configuration and no clusters', () => {
    const empty = translate(stateOf({}), { listenerPort: 8080 });
    assert.equal(empty.listeners.length, 1);
    assert.deepEqual(routeConfig(empty).virtual_hosts ?? [], []);
    assert.deepEqual(empty.clusters, []);
    assert.deepEqual(empty.endpoints, []);
  });
});

describe('translate: determinism', () => {
  it('gives identical bytes and versions for the same State twice', () => {
    const a = translate(stateOf(bigConfig()), OPTIONS);
    const b = translate(stateOf(bigConfig()), OPTIONS);
    assert.deepEqual(a, b);
  });

  it('does not depend on the order of objects in the State', () => {
    const config = bigConfig();
    const reversed: DeclarativeConfigInput = {
      ...config,
      upstreams: [...(config.upstreams ?? [])].reverse(),
      routes: [...(config.routes ?? [])].reverse(),
      rate_limit_policies: [...(config.rate_limit_policies ?? [])].reverse(),
      jwt_providers: [...(config.jwt_providers ?? [])].reverse(),
    };
    reversed.upstreams![reversed.upstreams!.length - 1] = {
      ...config.upstreams![0]!,
      endpoints: [...config.upstreams![0]!.endpoints].reverse(),
    };
    assert.deepEqual(translate(stateOf(reversed), OPTIONS), translate(stateOf(bigConfig()), OPTIONS));
  });

  it('changes only the route configuration when one route changes', () => {
    const before = translate(stateOf(bigConfig()), OPTIONS);
    const config = bigConfig();
    config.routes![2] = { name: 'health', match: { path: { exact: '/healthz' } }, action: { direct_response: { status: 204 } } };
    const after = translate(stateOf(config), OPTIONS);
    assert.notEqual(only(after.routes).version, only(before.routes).version);
    assert.deepEqual(after.listeners, before.listeners);
    assert.deepEqual(after.clusters, before.clusters);
    assert.deepEqual(after.endpoints, before.endpoints);
  });

  it('changes only that cluster (and its endpoints) when one upstream changes', () => {
    const before = translate(stateOf(bigConfig()), OPTIONS);
    const config = bigConfig();
    config.upstreams![6] = { name: 'unused', endpoints: [{ host: '10.0.4.2', port: 81 }] };
    const after = translate(stateOf(config), OPTIONS);
    const changed = (list: XdsResource[], other: XdsResource[]) =>
      list.filter((r, i) => r.version !== other[i]!.version).map((r) => r.name);
    assert.deepEqual(changed(after.clusters, before.clusters), []); // EDS cluster: endpoints live in the CLA
    assert.deepEqual(changed(after.endpoints, before.endpoints), ['upstream_unused']);
    assert.deepEqual(after.routes, before.routes);
    assert.deepEqual(after.listeners, before.listeners);
  });
});

describe('translate: TranslationCache', () => {
  it('never changes the output, across a series of changes', () => {
    const cache = createTranslationCache();
    const steps: Array<(c: DeclarativeConfigInput) => void> = [
      () => {},
      (c) => { c.routes![2] = { name: 'health', match: { path: { exact: '/healthz' } }, action: { direct_response: { status: 204 } } }; },
      (c) => { c.rate_limit_policies![0] = { name: 'per-route', key: ['route'], limit: { requests: 7, per: 'second' } }; },
      (c) => { c.upstreams![3] = { name: 'sessions', endpoints: [{ host: '10.0.1.1', port: 80 }], lb_policy: 'ring_hash', hash_key: { header: 'x-session' } }; },
      (c) => { c.routes = c.routes!.filter((r) => r.cors === undefined); },
      (c) => { c.routes!.push({ name: 'added', match: { path: { prefix: '/added' } }, action: { upstream: 'users' } }); },
      // A gateway-scoped policy is in force on routes that do not name it: its change must reach them.
      (c) => { c.rate_limit_policies!.push({ name: 'everywhere', key: ['route'], limit: { requests: 50, per: 'second' }, scope: 'gateway' }); },
      (c) => { c.rate_limit_policies = c.rate_limit_policies!.map((p) => (p.name === 'everywhere' ? { ...p, limit: { requests: 9, per: 'second' } } : p)); },
    ];
    let config = bigConfig();
    for (const [index, step] of steps.entries()) {
      config = structuredClone(config);
      step(config);
      const state = stateOf(config, index + 1);
      assert.deepEqual(translate(state, OPTIONS, cache), translate(state, OPTIONS), `step ${index}`);
      assert.equal(cache.routes.size, state.routes.length, 'the cache holds one revision of routes');
    }
  });

  it('reuses the encoded bytes of unchanged routes', () => {
    const cache = createTranslationCache();
    translate(stateOf(bigConfig()), OPTIONS, cache);
    const before = new Set([...cache.routes.values()].map((entry) => entry.bytes));
    const config = bigConfig();
    config.routes![2] = { name: 'health', match: { path: { exact: '/healthz' } }, action: { direct_response: { status: 204 } } };
    translate(stateOf(config), OPTIONS, cache);
    const reused = [...cache.routes.values()].filter((entry) => before.has(entry.bytes));
    assert.equal(reused.length, config.routes!.length - 1);
  });

  it('decides by identity when objects are shared between revisions (as the store shares them), and stays exact', () => {
    const cache = createTranslationCache();
    const first = stateOf(bigConfig(), 1);
    translate(first, OPTIONS, cache);
    const entries = new Map(cache.routes);
    // The next revision shares every object but one route, as a one-route commit does.
    const replaced = { ...first.routes[0]!, timeout_ms: 1234 };
    const second = { ...first, revision: 2, routes: [replaced, ...first.routes.slice(1)] };
    assert.deepEqual(translate(second, OPTIONS, cache), translate(second, OPTIONS));
    const kept = [...cache.routes.entries()].filter(([name, entry]) => entries.get(name) === entry).map(([name]) => name);
    assert.deepEqual(kept.sort(), first.routes.slice(1).map((r) => r.name).sort(), 'every shared route kept its entry without re-keying');
  });
});

describe('translate: TranslationCache across one-object commits (shared objects, as the store shares them)', () => {
  // Routes built to collide in match order (priority, path kind and length, methods) across a few host patterns,
  // plus auth and CORS that switch filters on and off: the incremental route order, filter needs and the
  // cached listener must give what a fresh translation gives, after every step.
  const routeSpec = fc.record({
    id: fc.integer({ min: 0, max: 30 }),
    hosts: fc.subarray(['a.example', 'b.example', '*.example', '*'], { minLength: 1 }),
    kind: fc.constantFrom('prefix', 'exact', 'regex'),
    len: fc.integer({ min: 1, max: 3 }),
    priority: fc.integer({ min: 0, max: 2 }),
    methods: fc.boolean(),
    auth: fc.boolean(),
    cors: fc.boolean(),
  });
  const toRoute = (r: { id: number; hosts: string[]; kind: string; len: number; priority: number; methods: boolean; auth: boolean; cors: boolean }) => ({
    name: `r${r.id}`,
    hosts: r.hosts,
    priority: r.priority,
    match: { path: r.kind === 'regex' ? { regex: `/x${'y'.repeat(r.len)}/.*` } : { [r.kind]: `/${'p'.repeat(r.len)}` }, ...(r.methods ? { methods: ['GET'] } : {}) },
    action: { upstream: 'a' },
    ...(r.auth ? { auth: { mode: 'api_key' } } : {}),
    ...(r.cors ? { cors: { allow_origins: ['https://a.example'] } } : {}),
  });
  const byName = <T extends { name: string }>(list: T[]) => [...list].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));

  it('gives what a fresh translation gives after every add, replace and delete', () => {
    // 150 random series of up to 12 steps; a mismatch is deterministic, not statistical.
    fc.assert(
      // Now and then a step's routes come out of the store's name order (reversed): the cache must translate those in full.
      fc.property(fc.array(routeSpec, { minLength: 1, maxLength: 8 }), fc.array(fc.tuple(fc.constantFrom('put', 'put', 'delete', 'reversed'), routeSpec), { maxLength: 12 }), (initial, steps) => {
        const cache = createTranslationCache();
        const options = { ...OPTIONS, authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: 9001 } };
        const parse = (spec: (typeof initial)[number]) => StateSchema.parse({ ...smallState([]), routes: [toRoute(spec)] }).routes[0]!;
        let state = { ...smallState([]), routes: byName([...new Map(initial.map((spec) => [spec.id, parse(spec)])).values()]) };
        assert.deepEqual(translate(state, options, cache), translate(state, options));
        for (const [op, spec] of steps) {
          const others = state.routes.filter((route) => route.name !== `r${spec.id}`);
          // Every route not touched stays the same object, as in the store's next revision.
          const routes = byName(op === 'delete' ? others : [...others, parse(spec)]);
          state = { ...state, revision: state.revision + 1, routes: op === 'reversed' ? routes.reverse() : routes };
          assert.deepEqual(translate(state, options, cache), translate(state, options));
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('translate: per-route stats (GATEWAY_ROUTE_STATS)', () => {
  const routes: DeclarativeConfigInput['routes'] = [
    { name: 'plain', match: { path: { prefix: '/plain' } }, action: { upstream: 'a' } },
    { name: 'split', match: { path: { prefix: '/split' } }, action: { split: [{ upstream: 'a', weight: 90 }, { upstream: 'b', weight: 10 }] } },
    { name: 'canary', match: { path: { prefix: '/canary' } }, action: { canary: { primary: 'a', canary: 'b', weight: 5, header: { name: 'x-canary', value: '1' } } } },
  ];
  const prefixes = (routeStats: TranslateOptions['routeStats']) => {
    const rc = routeConfig(translate(smallState(routes), { ...OPTIONS, routeStats }, createTranslationCache()));
    return rc.virtual_hosts.flatMap((vh) => vh.routes.map((r) => `${r.name}:${r.stat_prefix ?? ""}`)).sort();
  };

  it('all (the default): every Envoy route has its Sluice route name as stat prefix', () => {
    assert.deepEqual(prefixes(undefined), ['canary:canary', 'canary:canary', 'plain:plain', 'split:split']);
    assert.deepEqual(prefixes('all'), prefixes(undefined));
  });

  it('traffic_split: only routes whose traffic is split (what canary analysis reads); off: none', () => {
    assert.deepEqual(prefixes('traffic_split'), ['canary:canary', 'canary:canary', 'plain:', 'split:split']);
    assert.deepEqual(prefixes('off'), ['canary:', 'canary:', 'plain:', 'split:']);
  });

  it('the translation cache follows a mode change', () => {
    const cache = createTranslationCache();
    const state = smallState(routes);
    translate(state, OPTIONS, cache);
    assert.deepEqual(translate(state, { ...OPTIONS, routeStats: 'off' }, cache), translate(state, { ...OPTIONS, routeStats: 'off' }));
  });
});

describe('translate: listener and filter chain', () => {
  it('uses RDS over ADS for the route configuration', () => {
    const manager = hcm(translate(stateOf(bigConfig()), OPTIONS));
    assert.equal(manager.rds?.route_config_name, 'sluice_routes_10080');
    assert.deepEqual(manager.rds?.config_source?.ads, {});
    assert.equal(manager.rds?.config_source?.resource_api_version, 'V3');
    assert.equal(manager.stat_prefix, 'sluice_http_10080');
    assert.equal(manager.use_remote_address?.value, true);
    assert.equal(manager.normalize_path?.value, true);
  });

  it('listens on listenerAddress (default 0.0.0.0)', () => {
    const decodeListener = (res: EnvoyResources) => decode('envoy.config.listener.v3.Listener', only(res.listeners).value) as unknown as Listener__Output;
    const byDefault = decodeListener(translate(stateOf({}), { listenerPort: 8080 }));
    assert.deepEqual(byDefault.address?.socket_address, { address: '0.0.0.0', port_value: 8080 });
    const local = decodeListener(translate(stateOf({}), { listenerPort: 8081, listenerAddress: '127.0.0.1' }));
    assert.deepEqual(local.address?.socket_address, { address: '127.0.0.1', port_value: 8081 });
  });

  it('orders the filters header_mutation, cors, ext_authz, local_ratelimit, ratelimit, router when all are needed', () => {
    const filters = hcm(translate(stateOf(bigConfig()), OPTIONS)).http_filters;
    assert.deepEqual(
      filters.map((f) => f.name),
      [
        'envoy.filters.http.header_mutation',
        'envoy.filters.http.cors',
        'envoy.filters.http.ext_authz',
        'envoy.filters.http.local_ratelimit',
        'envoy.filters.http.ratelimit',
        'envoy.filters.http.router',
      ],
    );
  });

  it('leaves out the filters no route needs', () => {
    const plain = smallState([{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'a' } }]);
    assert.deepEqual(
      hcm(translate(plain, OPTIONS)).http_filters.map((f) => f.name),
      ['envoy.filters.http.header_mutation', 'envoy.filters.http.router'],
    );
    const authOnly = smallState([{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'a' }, auth: { mode: 'api_key' } }]);
    assert.deepEqual(
      hcm(translate(authOnly, OPTIONS)).http_filters.map((f) => f.name),
      ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router'],
    );
    const globalOnly = smallState(
      [{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'a' }, rate_limits: ['ip'] }],
      { rate_limit_policies: [{ name: 'ip', key: ['client_ip'], limit: { requests: 5, per: 'second' } }] },
    );
    assert.deepEqual(
      hcm(translate(globalOnly, OPTIONS)).http_filters.map((f) => f.name),
      ['envoy.filters.http.header_mutation', 'envoy.filters.http.ratelimit', 'envoy.filters.http.router'],
    );
  });

  it('strips client-sent identity headers (every x-sluice-*, and JWT claim headers) before ext_authz', () => {
    const first = hcm(translate(stateOf(bigConfig()), OPTIONS)).http_filters[0]!;
    const mutation = unpackAny(first.typed_config!) as unknown as HeaderMutation__Output;
    const [family, ...named] = mutation.mutations!.request_mutations;
    // The whole x-sluice- family by prefix, whatever the name.
    assert.deepEqual(family?.remove_on_match?.key_matcher, { prefix: 'x-sluice-', ignore_case: true });
    const removed = named.map((m) => m.remove);
    for (const header of ['x-user-id', 'x-consumer-id', 'x-org-id']) assert.ok(removed.includes(header), `strips ${header}`);
    assert.ok(!removed.some((h) => h?.startsWith('x-sluice-')), 'x-sluice-* names are left to the prefix rule');
    assert.deepEqual(removed, [...removed].sort());
  });

  it('applies the edge defaults to the listener (Envoy edge guidance)', () => {
    const res = translate(stateOf({}), { listenerPort: 8080 });
    const listener = decode('envoy.config.listener.v3.Listener', only(res.listeners).value) as unknown as Listener__Output;
    assert.equal(listener.per_connection_buffer_limit_bytes?.value, 32_768);
    const manager = hcm(res);
    assert.equal(manager.normalize_path?.value, true);
    assert.equal(manager.merge_slashes, true);
    assert.equal(manager.path_with_escaped_slashes_action, 'REJECT_REQUEST');
    assert.equal(manager.common_http_protocol_options?.headers_with_underscores_action, 'REJECT_REQUEST');
    assert.deepEqual(manager.common_http_protocol_options?.idle_timeout, { seconds: '3600' });
    assert.deepEqual(manager.request_headers_timeout, { seconds: '10' });
    assert.deepEqual(manager.stream_idle_timeout, { seconds: '300' });
    assert.deepEqual(manager.request_timeout, { seconds: '300' });
    assert.equal(manager.max_request_headers_kb?.value, 60);
    assert.equal(manager.http2_protocol_options?.max_concurrent_streams?.value, 100);
    assert.equal(manager.http2_protocol_options?.initial_stream_window_size?.value, 65_536);
    assert.equal(manager.http2_protocol_options?.initial_connection_window_size?.value, 1_048_576);
    assert.equal(manager.use_remote_address?.value, true);
    assert.equal(manager.xff_num_trusted_hops ?? 0, 0);
    // Nothing is internal: the only range is one no TCP peer can have.
    assert.deepEqual(manager.internal_address_config?.cidr_ranges?.map((r) => r.address_prefix), ['255.255.255.255']);
  });

  it('takes edge overrides and keeps the defaults for the rest', () => {
    const res = translate(stateOf({}), { listenerPort: 8080, edge: { requestHeadersTimeoutMs: 1_500, maxRequestHeadersKb: 8, xffTrustedHops: 2 } });
    const manager = hcm(res);
    assert.deepEqual(manager.request_headers_timeout, { seconds: '1', nanos: 500_000_000 });
    assert.equal(manager.max_request_headers_kb?.value, 8);
    assert.equal(manager.xff_num_trusted_hops, 2);
    assert.deepEqual(manager.stream_idle_timeout, { seconds: '300' });
  });

  it('configures ext_authz as a V3 gRPC service on the authz cluster, failing closed, off by default', () => {
    const filter = hcm(translate(stateOf(bigConfig()), OPTIONS)).http_filters.find((f) => f.name === 'envoy.filters.http.ext_authz')!;
    assert.equal(filter.disabled, true);
    const config = unpackAny(filter.typed_config!) as unknown as ExtAuthz__Output;
    assert.equal(config.grpc_service?.envoy_grpc?.cluster_name, 'sluice_authz');
    assert.equal(config.transport_api_version, 'V3');
    assert.equal(config.failure_mode_allow, false);
    assert.equal(config.status_on_error?.code, 'ServiceUnavailable');
  });

  it('configures the ratelimit filter with the domain and the rate-limit cluster, failing open', () => {
    const filter = hcm(translate(stateOf(bigConfig()), OPTIONS)).http_filters.find((f) => f.name === 'envoy.filters.http.ratelimit')!;
    const config = unpackAny(filter.typed_config!) as unknown as RateLimit__Output;
    assert.equal(config.domain, 'sluice');
    assert.equal(config.rate_limit_service?.grpc_service?.envoy_grpc?.cluster_name, 'sluice_ratelimit');
    assert.equal(config.rate_limit_service?.transport_api_version, 'V3');
    assert.equal(config.failure_mode_deny, false);
  });

  it('emits the authz and rate-limit clusters as HTTP/2 static clusters (one when shared)', () => {
    const res = translate(stateOf(bigConfig()), OPTIONS);
    const authz = cluster(res, 'sluice_authz');
    assert.equal(authz.type, 'STATIC');
    assert.deepEqual(authz.load_assignment?.endpoints[0]?.lb_endpoints[0]?.endpoint?.address?.socket_address, { address: '127.0.0.1', port_value: 9191 });
    const options = unpackAny(authz.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']!) as unknown as HttpProtocolOptions__Output;
    assert.deepEqual(options.explicit_http_config?.http2_protocol_options, {});
    const shared = translate(stateOf({}), {
      listenerPort: 1,
      authz: { clusterName: 'sluice_services', host: 'sluice.svc', port: 9000 },
      ratelimit: { clusterName: 'sluice_services', host: 'sluice.svc', port: 9000, domain: 'd' },
    });
    assert.deepEqual(shared.clusters.map((c) => c.name), ['sluice_services']);
    assert.equal(cluster(shared, 'sluice_services').type, 'STRICT_DNS');
  });
});

describe('translate: route match', () => {
  it('maps prefix, exact and regex paths', () => {
    const res = translate(stateOf(bigConfig()), OPTIONS);
    assert.equal(routeNamed(res, 'old-docs').match?.prefix, '/docs');
    assert.equal(routeNamed(res, 'health').match?.path, '/healthz');
    assert.equal(routeNamed(res, 'user-by-id').match?.safe_regex?.regex, '^/users/[0-9]+$');
  });

  it('maps methods to a :method matcher (one exact, several as a regex, OPTIONS added for CORS)', () => {
    const res = translate(stateOf(bigConfig()), OPTIONS);
    const byId = routeNamed(res, 'user-by-id').match!.headers[0]!;
    assert.equal(byId.name, ':method');
    assert.equal(byId.string_match?.safe_regex?.regex, 'GET|PUT');
    const withCors = routesNamed(res, 'users-list').at(-1)!.match!.headers[0]!;
    assert.equal(withCors.string_match?.safe_regex?.regex, 'GET|OPTIONS');
    const single = translate(smallState([{ name: 'r', match: { path: { prefix: '/' }, methods: ['POST'] }, action: { upstream: 'a' } }]), OPTIONS);
    assert.deepEqual(routeNamed(single, 'r').match!.headers[0], { name: ':method', string_match: { exact: 'POST' } });
  });

  it('maps header matchers: exact, prefix, regex, present, invert', () => {
    const headers = routesNamed(translate(stateOf(bigConfig()), OPTIONS), 'users-list').at(-1)!.match!.headers;
    assert.deepEqual(headers.slice(1), [
      { name: 'x-tenant', string_match: { exact: 'acme' } },
      { name: 'x-env', string_match: { prefix: 'prod' } },
      { name: 'x-trace', string_match: { safe_regex: { regex: '[0-9a-f]+' } } },
      { name: 'x-debug', present_match: true, invert_match: true },
    ]);
  });

  it('maps query matchers: exact, regex, present', () => {
    const query = routesNamed(translate(stateOf(bigConfig()), OPTIONS), 'users-list').at(-1)!.match!.query_parameters;
    assert.deepEqual(query, [
      { name: 'page', string_match: { safe_regex: { regex: '[0-9]+' } } },
      { name: 'view', string_match: { exact: 'full' } },
      { name: 'fields', present_match: true },
    ]);
  });
});

describe('translate: route actions', () => {
  const res = translate(stateOf(bigConfig()), OPTIONS);

  it('routes a single upstream to its cluster', () => {
    assert.equal(routeNamed(res, 'example-api', '*.example.com').route?.cluster, 'upstream_orders');
  });

  it('maps a split to weighted clusters, dropping zero weights (a lone survivor becomes a plain cluster)', () => {
    assert.deepEqual(routeNamed(res, 'user-by-id').route?.weighted_clusters?.clusters, [
      { name: 'upstream_users', weight: { value: 70 } },
      { name: 'upstream_users-v2', weight: { value: 30 } },
    ]);
    assert.equal(routeNamed(res, 'geo').route?.cluster, 'upstream_geo');
  });

  it('maps a canary to header and cookie opt-in routes, then the weighted primary route', () => {
    const [byHeader, byCookie, main] = routesNamed(res, 'users-list');
    assert.deepEqual(byHeader!.match!.headers.at(-1), { name: 'x-canary', string_match: { exact: 'always' } });
    assert.equal(byHeader!.route?.cluster, 'upstream_users-v2');
    const cookie = byCookie!.match!.headers.at(-1)!;
    assert.equal(cookie.name, 'cookie');
    const cookieRegex = new RegExp(`^(?:${cookie.string_match!.safe_regex!.regex})$`);
    for (const value of ['canary=yes', 'a=1; canary=yes', 'canary=yes; b=2', 'a=1;canary=yes;b=2']) assert.match(value, cookieRegex);
    for (const value of ['canary=no', 'xcanary=yes', 'canary=yess']) assert.doesNotMatch(value, cookieRegex);
    assert.equal(byCookie!.route?.cluster, 'upstream_users-v2');
    assert.deepEqual(main!.route?.weighted_clusters?.clusters, [
      { name: 'upstream_users', weight: { value: 90 } },
      { name: 'upstream_users-v2', weight: { value: 10 } },
    ]);
    assert.equal(main!.match!.headers.some((h) => h.name === 'x-canary' || h.name === 'cookie'), false);
  });

  it('maps direct responses and redirects', () => {
    assert.deepEqual(routeNamed(res, 'health').direct_response, { status: 200, body: { inline_string: 'ok' } });
    assert.deepEqual(routeNamed(res, 'old-docs').redirect, {
      scheme_redirect: 'https',
      host_redirect: 'docs.example.com',
      path_redirect: '/',
      response_code: 'MOVED_PERMANENTLY',
    });
    const codes = [302, 303, 307, 308] as const;
    const expected = ['FOUND', 'SEE_OTHER', 'TEMPORARY_REDIRECT', 'PERMANENT_REDIRECT'];
    codes.forEach((status, i) => {
      const one = translate(smallState([{ name: 'r', match: { path: { prefix: '/' } }, action: { redirect: { path: '/x', status } } }]), OPTIONS);
      assert.equal(routeNamed(one, 'r').redirect?.response_code, expected[i]);
    });
  });

  it('maps mirror, rewrites, timeout and retries', () => {
    const action = routesNamed(res, 'users-list').at(-1)!.route!;
    assert.deepEqual(action.request_mirror_policies, [
      { cluster: 'upstream_shadow', runtime_fraction: { default_value: { numerator: 25, denominator: 'HUNDRED' } } },
    ]);
    assert.equal(action.prefix_rewrite, '/v2/users');
    assert.equal(action.host_rewrite_literal, 'users.internal');
    assert.deepEqual(action.timeout, { seconds: '3' });
    assert.deepEqual(action.retry_policy, {
      retry_on: '5xx,connect-failure',
      num_retries: { value: 3 },
      per_try_timeout: { seconds: '1' },
      retry_back_off: { base_interval: { nanos: 25_000_000 }, max_interval: { nanos: 250_000_000 } },
    });
    assert.deepEqual(routeNamed(res, 'user-by-id').route?.regex_rewrite, {
      pattern: { regex: '^/users/([0-9]+)$' },
      substitution: '/v2/users/\\1',
    });
  });

  it('maps request and response header changes, keeping values literal', () => {
    const route = routesNamed(res, 'users-list').at(-1)!;
    assert.deepEqual(route.request_headers_to_add, [
      { header: { key: 'x-gateway', value: 'sluice 100%%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      { header: { key: 'x-multi', value: 'a' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
    ]);
    assert.deepEqual(route.request_headers_to_remove, ['x-internal']);
    assert.deepEqual(route.response_headers_to_add, [{ header: { key: 'x-served-by', value: 'sluice' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
    assert.deepEqual(route.response_headers_to_remove, ['server']);
  });

  it('adds hash policies for ring_hash upstreams (header, cookie, source IP)', () => {
    assert.deepEqual(routeNamed(res, 'user-by-id').route?.hash_policy, [{ header: { header_name: 'x-user' } }]);
    assert.deepEqual(routeNamed(res, 'sessions', 'api.example.com').route?.hash_policy, [{ cookie: { name: 'sid' } }]);
    assert.deepEqual(routeNamed(res, 'geo').route?.hash_policy, [{ connection_properties: { source_ip: true } }]);
    assert.equal(routeNamed(res, 'example-api', '*.example.com').route?.hash_policy, undefined);
  });

  it('sets the Envoy route name to the Sluice route name', () => {
    assert.deepEqual([...new Set(names(res))].sort(), ['geo', 'health', 'old-docs', 'user-by-id', 'users-list']);
  });
});

describe('translate: per-route filter config', () => {
  const res = translate(stateOf(bigConfig()), OPTIONS);

  it('disables ext_authz on auth none routes', () => {
    assert.deepEqual(perFilter<ExtAuthzPerRoute__Output>(routeNamed(res, 'health'), 'envoy.filters.http.ext_authz'), { disabled: true });
  });

  it('passes route name, auth mode, scopes and providers to the authz service', () => {
    const config = perFilter<ExtAuthzPerRoute__Output>(routesNamed(res, 'users-list').at(-1)!, 'envoy.filters.http.ext_authz');
    assert.deepEqual(config?.check_settings?.context_extensions, {
      sluice_auth_mode: 'jwt',
      sluice_jwt_providers: 'idp',
      sluice_route: 'users-list',
      sluice_scopes: 'profile users:read',
    });
    const apiKey = perFilter<ExtAuthzPerRoute__Output>(routeNamed(res, 'user-by-id'), 'envoy.filters.http.ext_authz');
    assert.deepEqual(apiKey?.check_settings?.context_extensions, { sluice_auth_mode: 'api_key', sluice_route: 'user-by-id' });
  });

  it('keys typed_per_filter_config in sorted order', () => {
    const keys = Object.keys(routesNamed(res, 'users-list').at(-1)!.typed_per_filter_config);
    assert.deepEqual(keys, ['envoy.filters.http.cors', 'envoy.filters.http.ext_authz', 'envoy.filters.http.local_ratelimit']);
  });

  it('attaches the CORS policy per route', () => {
    const policy = perFilter<CorsPolicy__Output>(routesNamed(res, 'users-list').at(-1)!, 'envoy.filters.http.cors');
    assert.deepEqual(policy, {
      allow_origin_string_match: [{ exact: 'https://app.example.com' }, { safe_regex: { regex: 'https://.*\\.example\\.com' } }],
      allow_methods: 'GET,POST',
      allow_headers: 'authorization',
      expose_headers: 'x-request-id',
      max_age: '600',
      allow_credentials: { value: true },
    });
    assert.equal(perFilter(routeNamed(res, 'health'), 'envoy.filters.http.cors'), undefined);
  });

  it('gives routes with a route-keyed policy a local token bucket (limit + burst per period)', () => {
    const bucket = perFilter<LocalRateLimit__Output>(routeNamed(res, 'sessions', 'api.example.com'), 'envoy.filters.http.local_ratelimit');
    assert.equal(bucket?.stat_prefix, 'sluice_local_ratelimit');
    assert.deepEqual(bucket?.token_bucket, { max_tokens: 120, tokens_per_fill: { value: 100 }, fill_interval: { seconds: '60' } });
    assert.equal(bucket?.filter_enabled?.default_value?.numerator, 100);
    assert.equal(bucket?.filter_enforced?.default_value?.numerator, 100);
    assert.equal(perFilter(routeNamed(res, 'geo'), 'envoy.filters.http.local_ratelimit'), undefined);
  });

  it('emits one rate-limit descriptor per policy: policy name, then each key part', () => {
    const limits = routesNamed(res, 'users-list').at(-1)!.route!.rate_limits;
    const policy = (name: string) => ({ generic_key: { descriptor_key: 'sluice_policy', descriptor_value: name } });
    assert.deepEqual(limits, [
      { actions: [policy('per-route'), { generic_key: { descriptor_key: 'route', descriptor_value: 'users-list' } }] },
      {
        actions: [
          policy('per-consumer'),
          {
            metadata: {
              descriptor_key: 'consumer',
              metadata_key: { key: 'envoy.filters.http.ext_authz', path: [{ key: 'consumer' }] },
              default_value: 'anonymous',
              source: 'DYNAMIC',
            },
          },
          { generic_key: { descriptor_key: 'route', descriptor_value: 'users-list' } },
        ],
      },
      { actions: [policy('per-ip'), { remote_address: {} }] },
      { actions: [policy('per-tenant'), { request_headers: { header_name: 'x-tenant', descriptor_key: 'header:x-tenant', skip_if_absent: true } }] },
    ]);
  });

  it('answers 503 on auth routes when no authz service is configured (fails closed)', () => {
    const state = smallState([
      { name: 'open', match: { path: { prefix: '/open' } }, action: { upstream: 'a' } },
      { name: 'closed', match: { path: { prefix: '/closed' } }, action: { upstream: 'a' }, auth: { mode: 'jwt' } },
    ], { jwt_providers: [{ name: 'idp', issuer: 'i', jwks_uri: 'https://i/jwks' }] });
    const res2 = translate(state, { listenerPort: 8080 });
    assert.equal(routeNamed(res2, 'closed').direct_response?.status, 503);
    assert.equal(routeNamed(res2, 'open').route?.cluster, 'upstream_a');
    assert.equal(hcm(res2).http_filters.some((f) => f.name === 'envoy.filters.http.ext_authz'), false);
  });

  it('leaves out global rate limits when no rate-limit service is configured', () => {
    const { ratelimit: _unused, ...withoutRls } = OPTIONS;
    const res2 = translate(stateOf(bigConfig()), withoutRls);
    assert.equal(routesNamed(res2, 'users-list').at(-1)!.route!.rate_limits?.length ?? 0, 0);
    assert.equal(hcm(res2).http_filters.some((f) => f.name === 'envoy.filters.http.ratelimit'), false);
  });
});

describe('translate: route order', () => {
  const route = (name: string, path: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    name,
    match: { path, ...((extra.match as object | undefined) ?? {}) },
    action: { upstream: 'a' },
    ...Object.fromEntries(Object.entries(extra).filter(([key]) => key !== 'match')),
  });

  it('puts exact before regex before prefix, longer paths first, then by name', () => {
    const state = smallState([
      route('p-short', { prefix: '/a' }),
      route('p-long', { prefix: '/a/b/c' }),
      route('regex-b', { regex: '/a/.*' }),
      route('regex-a', { regex: '/z/.*' }),
      route('exact-short', { exact: '/a' }),
      route('exact-long', { exact: '/a/b' }),
      route('p-root', { prefix: '/' }),
      route('p-same-b', { prefix: '/q' }),
      route('p-same-a', { prefix: '/w' }),
    ]);
    assert.deepEqual(names(translate(state, OPTIONS)), [
      'exact-long', 'exact-short', 'regex-a', 'regex-b', 'p-long', 'p-same-a', 'p-same-b', 'p-short', 'p-root',
    ]);
  });

  it('puts higher priority first, before every other rule', () => {
    const state = smallState([route('exact', { exact: '/a' }), route('catch-all', { prefix: '/' }, { priority: 10 }), route('low', { exact: '/b' }, { priority: -1 })]);
    assert.deepEqual(names(translate(state, OPTIONS)), ['catch-all', 'exact', 'low']);
  });

  it('puts the route with more conditions first when paths tie', () => {
    const state = smallState([
      route('any', { prefix: '/api' }),
      route('get', { prefix: '/api' }, { match: { methods: ['GET'] } }),
      route('get-json', { prefix: '/api' }, { match: { methods: ['GET'], headers: [{ name: 'accept', exact: 'application/json' }] } }),
    ]);
    assert.deepEqual(names(translate(state, OPTIONS)), ['get-json', 'get', 'any']);
  });
});

describe('translate: virtual hosts', () => {
  const route = (name: string, hosts: string[], prefix = '/') => ({ name, hosts, match: { path: { prefix } }, action: { upstream: 'a' } });

  it('gives every domain exactly one virtual host, `*` last', () => {
    const state = smallState([
      route('a-only', ['a.example.com'], '/a'),
      route('a-and-b', ['a.example.com', 'b.example.com'], '/ab'),
      route('wild', ['*.example.com'], '/w'),
      route('any', ['*'], '/any'),
    ]);
    const rc = routeConfig(translate(state, OPTIONS));
    const domains = rc.virtual_hosts.flatMap((v) => v.domains);
    assert.equal(new Set(domains).size, domains.length, 'no domain in two virtual hosts');
    assert.deepEqual([...domains].sort(), ['*', '*.example.com', 'a.example.com', 'b.example.com']);
    assert.deepEqual(rc.virtual_hosts.at(-1)!.domains, ['*']);
  });

  it('keeps each route in the virtual hosts of its own patterns (the most specific host owns the request)', () => {
    const state = smallState([
      route('a-only', ['a.example.com'], '/a'),
      route('a-and-b', ['a.example.com', 'b.example.com'], '/ab'),
      route('wild', ['*.example.com'], '/w'),
      route('any', ['*'], '/any-longer-prefix'),
    ]);
    const rc = routeConfig(translate(state, OPTIONS));
    assert.deepEqual(vhost(rc, 'a.example.com').routes.map((r) => r.name), ['a-and-b', 'a-only']);
    assert.deepEqual(vhost(rc, 'b.example.com').routes.map((r) => r.name), ['a-and-b']);
    assert.deepEqual(vhost(rc, '*.example.com').routes.map((r) => r.name), ['wild']);
    assert.deepEqual(vhost(rc, '*').routes.map((r) => r.name), ['any']);
  });

  it('puts a route listing `*` and another host in one virtual host when their routes agree', () => {
    const rc = routeConfig(translate(smallState([route('both', ['*', 'x.example.com'])]), OPTIONS));
    assert.equal(rc.virtual_hosts.length, 1);
    assert.deepEqual(rc.virtual_hosts[0]!.domains, ['*', 'x.example.com']);
  });

  it('merges domains with identical route lists into one virtual host named from its domains', () => {
    const state = smallState([route('both', ['x.example.com', 'y.example.com'])]);
    const rc = routeConfig(translate(state, OPTIONS));
    assert.equal(rc.virtual_hosts.length, 1);
    assert.deepEqual(rc.virtual_hosts[0]!.domains, ['x.example.com', 'y.example.com']);
    assert.equal(rc.virtual_hosts[0]!.name, 'x.example.com,y.example.com');
    assert.equal(rc.ignore_port_in_host_matching, true);
  });
});

describe('translate: clusters and endpoints', () => {
  const res = translate(stateOf(bigConfig()), OPTIONS);

  it('makes an EDS cluster over ADS for IP endpoints, with timeouts, breakers, outlier detection and health checks', () => {
    const users = cluster(res, 'upstream_users');
    assert.equal(users.type, 'EDS');
    assert.deepEqual(users.eds_cluster_config?.eds_config, { ads: {}, resource_api_version: 'V3' });
    assert.deepEqual(users.connect_timeout, { seconds: '2', nanos: 500_000_000 });
    assert.equal(users.lb_policy, 'ROUND_ROBIN');
    assert.deepEqual(users.circuit_breakers?.thresholds, [
      { priority: 'DEFAULT', max_connections: { value: 100 }, max_pending_requests: { value: 50 }, max_requests: { value: 200 }, max_retries: { value: 3 } },
    ]);
    assert.deepEqual(users.outlier_detection, {
      consecutive_5xx: { value: 5 },
      interval: { seconds: '10' },
      base_ejection_time: { seconds: '30' },
      max_ejection_percent: { value: 50 },
    });
    assert.deepEqual(users.health_checks, [
      {
        timeout: { seconds: '1', nanos: 500_000_000 },
        interval: { seconds: '5' },
        healthy_threshold: { value: 2 },
        unhealthy_threshold: { value: 3 },
        http_health_check: { path: '/healthz', codec_client_type: 'HTTP1', expected_statuses: [{ start: '200', end: '201' }, { start: '204', end: '206' }] },
      },
    ]);
  });

  it('publishes weighted endpoints, sorted by address', () => {
    const found = res.endpoints.find((e) => e.name === 'upstream_users')!;
    const cla = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', found.value) as unknown as ClusterLoadAssignment__Output;
    assert.equal(cla.cluster_name, 'upstream_users');
    assert.deepEqual(
      cla.endpoints[0]!.lb_endpoints.map((e) => [e.endpoint?.address?.socket_address?.address, e.endpoint?.address?.socket_address?.port_value, e.load_balancing_weight?.value]),
      [['10.0.0.1', 8080, 1], ['10.0.0.2', 8080, 2]],
    );
  });

  it('makes a STRICT_DNS cluster with inline endpoints when an endpoint is a hostname', () => {
    const v2 = cluster(res, 'upstream_users-v2');
    assert.equal(v2.type, 'STRICT_DNS');
    assert.equal(v2.load_assignment?.endpoints[0]?.lb_endpoints[0]?.endpoint?.address?.socket_address?.address, 'localhost');
    assert.equal(v2.eds_cluster_config, undefined);
  });

  it('maps load-balancing policies and ring hash', () => {
    assert.equal(cluster(res, 'upstream_users-v2').lb_policy, 'RING_HASH');
    assert.deepEqual(cluster(res, 'upstream_users-v2').ring_hash_lb_config, {});
    assert.equal(cluster(res, 'upstream_orders').lb_policy, 'LEAST_REQUEST');
    assert.equal(cluster(res, 'upstream_shadow').lb_policy, 'RANDOM');
  });

  it('sets up upstream TLS: SNI, inline CA with a SAN check, or the system CA bundle with the endpoint name', () => {
    const v2 = cluster(res, 'upstream_users-v2');
    assert.equal(v2.transport_socket?.name, 'envoy.transport_sockets.tls');
    const tls = unpackAny(v2.transport_socket!.typed_config!) as unknown as UpstreamTlsContext__Output;
    assert.equal(tls.sni, 'users.internal');
    assert.deepEqual(tls.common_tls_context?.alpn_protocols, ['h2']);
    assert.equal(tls.common_tls_context?.validation_context?.trusted_ca?.inline_string, TEST_CA);
    assert.deepEqual(tls.common_tls_context?.validation_context?.match_typed_subject_alt_names, [{ san_type: 'DNS', matcher: { exact: 'users.internal' } }]);
    const orders = unpackAny(cluster(res, 'upstream_orders').transport_socket!.typed_config!) as unknown as UpstreamTlsContext__Output;
    // "System roots" is the system CA bundle file (system_root_certs verifies nothing on Linux), and the name is checked: here the endpoint's IP.
    assert.equal(orders.common_tls_context?.validation_context?.trusted_ca?.filename, '/etc/ssl/certs/ca-certificates.crt');
    assert.deepEqual(orders.common_tls_context?.validation_context?.match_typed_subject_alt_names, [{ san_type: 'IP_ADDRESS', matcher: { exact: '::1' } }]);
    assert.equal(cluster(res, 'upstream_users').transport_socket, undefined);
  });

  it('speaks HTTP/2 upstream via typed_extension_protocol_options when asked', () => {
    const v2 = cluster(res, 'upstream_users-v2');
    const options = unpackAny(v2.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']!) as unknown as HttpProtocolOptions__Output;
    assert.deepEqual(options.explicit_http_config?.http2_protocol_options, {});
    assert.equal(cluster(res, 'upstream_users').typed_extension_protocol_options, undefined);
  });
});

// ---- the real Envoy ------------------------------------------------------------

const ENVOY = path.resolve(import.meta.dirname, '../../envoy/.install/envoy/_bin/envoy');

describe('translate: Envoy accepts the output', { skip: existsSync(ENVOY) ? false : 'Envoy not installed (bash envoy/install.sh)' }, () => {
  it('passes envoy --mode validate for the State with every feature', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-translate-'));
    try {
      const file = path.join(dir, 'bootstrap.pb');
      writeFileSync(file, staticBootstrap(translate(stateOf(bigConfig()), OPTIONS)));
      const output = execFileSync(ENVOY, ['--mode', 'validate', '-c', file, '-l', 'error'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      assert.match(output, /OK/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A binary Bootstrap with the translated resources made static: the route
 * configuration inlined into the listener (instead of RDS) and EDS clusters given
 * their ClusterLoadAssignment inline. Encoded by hand (Bootstrap.static_resources
 * = 2, StaticResources.listeners = 1, .clusters = 2) to avoid loading bootstrap.proto.
 */
function staticBootstrap(res: EnvoyResources): Uint8Array {
  const listeners = res.listeners.map((r) => {
    const listener = decode('envoy.config.listener.v3.Listener', r.value) as unknown as Listener__Output;
    const filter = listener.filter_chains[0]!.filters[0]!;
    const manager = unpackAny(filter.typed_config!) as HttpConnectionManager;
    delete manager.rds;
    // The translated RouteConfiguration bytes, untouched, as HttpConnectionManager.route_config (field 4).
    const { type_url } = packAny('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', manager);
    const value = Buffer.concat([encode('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', manager), field(4, only(res.routes).value)]);
    filter.typed_config = { type_url, value };
    return encode('envoy.config.listener.v3.Listener', listener as unknown as Listener);
  });
  const clusters = res.clusters.map((r) => {
    const c = decode('envoy.config.cluster.v3.Cluster', r.value) as Cluster;
    if (c.type === 'EDS') {
      c.type = 'STATIC';
      delete c.eds_cluster_config;
      c.load_assignment = decode('envoy.config.endpoint.v3.ClusterLoadAssignment', res.endpoints.find((e) => e.name === c.name)!.value);
    }
    return encode('envoy.config.cluster.v3.Cluster', c);
  });
  const staticResources = Buffer.concat([...listeners.map((b) => field(1, b)), ...clusters.map((b) => field(2, b))]);
  return field(2, staticResources);
}

/** A length-delimited protobuf field. */
function field(number: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}
