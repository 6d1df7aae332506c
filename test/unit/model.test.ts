// The model: schemas accept valid objects (with defaults filled in) and reject
// invalid ones naming the offending field; validateState checks cross-object rules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { z } from 'zod';
import {
  ConsumerSchema,
  CredentialSchema,
  type DeclarativeConfigInput,
  DeclarativeConfigSchema,
  type Issue,
  JwtProviderSchema,
  RateLimitPolicySchema,
  RouteSchema,
  StateSchema,
  UpstreamSchema,
  emptyState,
  estimateProgramSize,
  isIdentityHeader,
  issuesFromZod,
  parseDeclarativeConfig,
  parseState,
  re2Problem,
  validateState,
} from '../../control-plane/src/model/index.ts';

type Json = string | number | boolean | null | undefined | Json[] | { [key: string]: Json };

/** `base` with `patch` merged in (objects merged, everything else replaced; an undefined value deletes the key). */
function patched(base: Json, patch: Json): Json {
  if (!isObject(base) || !isObject(patch)) return patch;
  const out: { [key: string]: Json } = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) delete out[key];
    else out[key] = key in base ? patched(base[key], value) : value;
  }
  return out;
}

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function issuesOf(schema: z.ZodType, input: unknown): Issue[] {
  const result = schema.safeParse(input);
  return result.success ? [] : issuesFromZod(result.error);
}

function assertRejectedAt(issues: Issue[], path: (string | number)[], label: string): void {
  assert.ok(issues.length > 0, `${label}: expected a rejection`);
  assert.ok(
    issues.some((issue) => JSON.stringify(issue.path) === JSON.stringify(path)),
    `${label}: expected an issue at ${JSON.stringify(path)}, got ${JSON.stringify(issues)}`,
  );
}

const UPSTREAM: Json = { name: 'users', endpoints: [{ host: '10.0.0.1', port: 8080 }] };
const ROUTE: Json = { name: 'users', match: { path: { prefix: '/users' } }, action: { upstream: 'users' } };
const CONSUMER: Json = { name: 'acme' };
const CREDENTIAL: Json = { name: 'acme-key', consumer: 'acme', kind: 'api_key' };
const PROVIDER: Json = { name: 'idp', issuer: 'https://idp.example.com/', jwks_uri: 'https://idp.example.com/jwks.json' };
const POLICY: Json = { name: 'per-ip', key: ['client_ip'], limit: { requests: 10, per: 'second' } };

const SCHEMAS = {
  upstream: [UpstreamSchema, UPSTREAM],
  route: [RouteSchema, ROUTE],
  consumer: [ConsumerSchema, CONSUMER],
  credential: [CredentialSchema, CREDENTIAL],
  provider: [JwtProviderSchema, PROVIDER],
  policy: [RateLimitPolicySchema, POLICY],
} as const;

type Case = [kind: keyof typeof SCHEMAS, label: string, patch: Json, path: (string | number)[]];

const INVALID: Case[] = [
  // Upstream
  ['upstream', 'uppercase name', { name: 'Users' }, ['name']],
  ['upstream', 'name longer than 63', { name: 'a'.repeat(64) }, ['name']],
  ['upstream', 'name ending in a hyphen', { name: 'users-' }, ['name']],
  ['upstream', 'name of the wrong type', { name: 42 }, ['name']],
  ['upstream', 'unknown field', { colour: 'blue' }, ['colour']],
  ['upstream', 'port 0', { endpoints: [{ host: '10.0.0.1', port: 0 }] }, ['endpoints', 0, 'port']],
  ['upstream', 'port 65536', { endpoints: [{ host: '10.0.0.1', port: 65536 }] }, ['endpoints', 0, 'port']],
  ['upstream', 'port as a string', { endpoints: [{ host: '10.0.0.1', port: '80' }] }, ['endpoints', 0, 'port']],
  ['upstream', 'weight 0', { endpoints: [{ host: '10.0.0.1', port: 80, weight: 0 }] }, ['endpoints', 0, 'weight']],
  ['upstream', 'weight 129', { endpoints: [{ host: '10.0.0.1', port: 80, weight: 129 }] }, ['endpoints', 0, 'weight']],
  ['upstream', 'host with a space', { endpoints: [{ host: 'bad host', port: 80 }] }, ['endpoints', 0, 'host']],
  ['upstream', 'no endpoints', { endpoints: [] }, ['endpoints']],
  ['upstream', 'duplicate endpoint', { endpoints: [{ host: 'a.svc', port: 80 }, { host: 'A.svc', port: 80 }] }, ['endpoints', 1]],
  ['upstream', 'unknown lb policy', { lb_policy: 'maglev' }, ['lb_policy']],
  ['upstream', 'ring_hash without a hash key', { lb_policy: 'ring_hash' }, ['hash_key']],
  ['upstream', 'hash key without ring_hash', { hash_key: { source_ip: true } }, ['hash_key']],
  ['upstream', 'two hash keys', { lb_policy: 'ring_hash', hash_key: { header: 'x-user', cookie: 'sid' } }, ['hash_key', 'cookie']],
  ['upstream', 'health check path without a slash', { health_check: { path: 'healthz' } }, ['health_check', 'path']],
  ['upstream', 'CA that is not PEM', { tls: { verify: { ca_pem: 'not a certificate' } } }, ['tls', 'verify', 'ca_pem']],
  ['upstream', 'ejection percent above 100', { outlier_detection: { max_ejection_percent: 101 } }, ['outlier_detection', 'max_ejection_percent']],
  ['upstream', 'unknown protocol', { protocol: 'http3' }, ['protocol']],
  ['upstream', 'connect timeout 0', { connect_timeout_ms: 0 }, ['connect_timeout_ms']],
  // Route: match
  ['route', 'unknown field', { colour: 'blue' }, ['colour']],
  ['route', 'unknown field in match', { match: { verb: 'GET' } }, ['match', 'verb']],
  ['route', 'prefix and exact together', { match: { path: { exact: '/users' } } }, ['match', 'path', 'exact']],
  ['route', 'no path kind', { match: { path: { prefix: undefined } } }, ['match', 'path']],
  ['route', 'prefix without a slash', { match: { path: { prefix: 'users' } } }, ['match', 'path', 'prefix']],
  ['route', 'regex with lookahead', { match: { path: { prefix: undefined, regex: '/users(?=/admin)' } } }, ['match', 'path', 'regex']],
  ['route', 'regex with lookbehind', { match: { path: { prefix: undefined, regex: '(?<!admin)/users' } } }, ['match', 'path', 'regex']],
  ['route', 'header regex with a backreference', { match: { headers: [{ name: 'x-a', regex: '(a)\\1' }] } }, ['match', 'headers', 0, 'regex']],
  ['route', 'query regex with a syntax error', { match: { query: [{ name: 'q', regex: '(' }] } }, ['match', 'query', 0, 'regex']],
  ['route', 'regex too large for RE2', { match: { path: { prefix: undefined, regex: '/[a-z0-9]{1,300}' } } }, ['match', 'path', 'regex']],
  ['route', 'uppercase header name', { match: { headers: [{ name: 'X-Tenant', exact: 'a' }] } }, ['match', 'headers', 0, 'name']],
  ['route', 'header name with a space', { match: { headers: [{ name: 'x tenant', exact: 'a' }] } }, ['match', 'headers', 0, 'name']],
  ['route', 'header matcher with two kinds', { match: { headers: [{ name: 'x-a', exact: 'a', prefix: 'b' }] } }, ['match', 'headers', 0, 'prefix']],
  ['route', 'lowercase method', { match: { methods: ['get'] } }, ['match', 'methods', 0]],
  ['route', 'duplicate method', { match: { methods: ['GET', 'GET'] } }, ['match', 'methods', 1]],
  ['route', 'uppercase host', { hosts: ['Example.com'] }, ['hosts', 0]],
  ['route', 'prefix wildcard host', { hosts: ['example.*'] }, ['hosts', 0]],
  ['route', 'fractional priority', { priority: 1.5 }, ['priority']],
  // Route: action
  ['route', 'split weights summing to 99', { action: { upstream: undefined, split: [{ upstream: 'a', weight: 50 }, { upstream: 'b', weight: 49 }] } }, ['action', 'split']],
  ['route', 'split naming an upstream twice', { action: { upstream: undefined, split: [{ upstream: 'a', weight: 50 }, { upstream: 'a', weight: 50 }] } }, ['action', 'split', 1]],
  ['route', 'two actions', { action: { split: [{ upstream: 'a', weight: 100 }] } }, ['action', 'split']],
  ['route', 'no action', { action: { upstream: undefined } }, ['action']],
  ['route', 'canary to itself', { action: { upstream: undefined, canary: { primary: 'a', canary: 'a' } } }, ['action', 'canary', 'canary']],
  ['route', 'redirect status 304', { action: { upstream: undefined, redirect: { path: '/x', status: 304 } } }, ['action', 'redirect', 'status']],
  ['route', 'redirect to nowhere', { action: { upstream: undefined, redirect: { status: 301 } } }, ['action', 'redirect']],
  ['route', 'direct response status 99', { action: { upstream: undefined, direct_response: { status: 99 } } }, ['action', 'direct_response', 'status']],
  ['route', 'mirror percent 101', { mirror: { upstream: 'shadow', percent: 101 } }, ['mirror', 'percent']],
  ['route', 'unknown retry condition', { retries: { on: ['sometimes'] } }, ['retries', 'on', 0]],
  ['route', 'backoff max below base', { retries: { on: ['5xx'], backoff_base_ms: 100, backoff_max_ms: 50 } }, ['retries', 'backoff_max_ms']],
  ['route', 'rewrite with prefix and regex', { rewrite: { prefix: '/a', regex: { pattern: 'a', substitution: 'b' } } }, ['rewrite', 'regex']],
  ['route', 'prefix rewrite on a regex path', { match: { path: { prefix: undefined, regex: '/a/.*' } }, rewrite: { prefix: '/b' } }, ['rewrite', 'prefix']],
  ['route', 'substitution naming a missing group', { rewrite: { regex: { pattern: '/(a)', substitution: '/\\2' } } }, ['rewrite', 'regex', 'substitution']],
  ['route', 'rate limits on a direct response', { action: { upstream: undefined, direct_response: { status: 200 } }, rate_limits: ['p'] }, ['rate_limits']],
  ['route', 'timeout on a redirect', { action: { upstream: undefined, redirect: { path: '/x' } }, timeout_ms: 100 }, ['timeout_ms']],
  // Route: headers, auth, cors
  ['route', 'adding the host header', { request_headers: { add: [{ name: 'host', value: 'x' }] } }, ['request_headers', 'add', 0, 'name']],
  ['route', 'adding an identity header', { request_headers: { add: [{ name: 'x-user-id', value: 'x' }] } }, ['request_headers', 'add', 0, 'name']],
  ['route', 'header value with a newline', { response_headers: { add: [{ name: 'x-a', value: 'a\r\nb' }] } }, ['response_headers', 'add', 0, 'value']],
  ['route', 'unknown auth mode', { auth: { mode: 'basic' } }, ['auth', 'mode']],
  ['route', 'scopes without auth', { auth: { mode: 'none', scopes: ['read'] } }, ['auth', 'scopes']],
  ['route', 'jwt providers on an api_key route', { auth: { mode: 'api_key', jwt_providers: ['idp'] } }, ['auth', 'jwt_providers']],
  ['route', 'CORS origin without a scheme', { cors: { allow_origins: ['app.example.com'] } }, ['cors', 'allow_origins', 0]],
  // Consumers, credentials, providers, policies
  ['consumer', 'tag with a space', { tags: ['gold tier'] }, ['tags', 0]],
  ['consumer', 'metadata value not a string', { metadata: { tier: 1 } }, ['metadata', 'tier']],
  ['credential', 'jwt_subject without jwt', { kind: 'jwt_subject' }, ['jwt']],
  ['credential', 'api_key with jwt', { jwt: { provider: 'idp', subject: 's' } }, ['jwt']],
  ['credential', 'expiry that is not a date-time', { expires_at: 'tomorrow' }, ['expires_at']],
  ['credential', 'a key in the input', { key: 'sk_live_123' }, ['key']],
  ['provider', 'both jwks_uri and jwks', { jwks: { keys: [{ kty: 'RSA' }] } }, ['jwks']],
  ['provider', 'neither jwks_uri nor jwks', { jwks_uri: undefined }, []],
  ['provider', 'jwks_uri that is not http(s)', { jwks_uri: 'ftp://idp.example.com/jwks' }, ['jwks_uri']],
  ['provider', 'HS256', { algorithms: ['HS256'] }, ['algorithms', 0]],
  ['provider', "algorithm 'none'", { algorithms: ['RS256', 'none'] }, ['algorithms', 1]],
  ['provider', 'clock skew above 300 s', { clock_skew_s: 301 }, ['clock_skew_s']],
  ['provider', 'claim header with uppercase', { claims_to_headers: [{ claim: 'sub', header: 'X-User' }] }, ['claims_to_headers', 0, 'header']],
  ['policy', 'unknown key part', { key: ['user'] }, ['key', 0]],
  ['policy', 'duplicate key part', { key: ['route', 'route'] }, ['key', 1]],
  ['policy', 'zero requests', { limit: { requests: 0 } }, ['limit', 'requests']],
  ['policy', 'unknown period', { limit: { per: 'week' } }, ['limit', 'per']],
  ['policy', 'unknown algorithm', { algorithm: 'leaky_bucket' }, ['algorithm']],
];

describe('model: invalid objects are rejected at the offending field', () => {
  it('has a table of at least 30 cases', () => {
    assert.ok(INVALID.length >= 30);
  });

  for (const [kind, label, patch, path] of INVALID) {
    it(`${kind}: ${label}`, () => {
      const [schema, base] = SCHEMAS[kind];
      assert.equal(schema.safeParse(base).success, true, 'the base object is valid');
      assertRejectedAt(issuesOf(schema, patched(base, patch)), path, label);
    });
  }
});

describe('model: valid objects', () => {
  it('fills upstream defaults', () => {
    const upstream = UpstreamSchema.parse(UPSTREAM);
    assert.deepEqual(upstream, {
      name: 'users',
      endpoints: [{ host: '10.0.0.1', port: 8080, weight: 1 }],
      lb_policy: 'round_robin',
      connect_timeout_ms: 5000,
      protocol: 'http1',
    });
  });

  it('fills route defaults', () => {
    const route = RouteSchema.parse(ROUTE);
    assert.deepEqual(route.hosts, ['*']);
    assert.equal(route.priority, 0);
    assert.deepEqual(route.auth, { mode: 'none', scopes: [] });
    assert.deepEqual(route.rate_limits, []);
  });

  it('accepts every action, match kind and option', () => {
    const valid: Json[] = [
      { action: { upstream: undefined, split: [{ upstream: 'a', weight: 0 }, { upstream: 'b', weight: 100 }] } },
      { action: { upstream: undefined, canary: { primary: 'a', canary: 'b', header: { name: 'x-canary', value: '1' }, cookie: { name: 'canary', value: 'on' }, weight: 5 } } },
      { action: { upstream: undefined, direct_response: { status: 404, body: 'nope' } } },
      { action: { upstream: undefined, redirect: { scheme: 'https' } } },
      { match: { path: { prefix: undefined, exact: '/a' }, methods: ['GET', 'POST'], headers: [{ name: 'x-a', present: true, invert: true }], query: [{ name: 'q', present: true }] } },
      { match: { path: { prefix: undefined, regex: '(?i)^/v[0-9]+/(?P<id>[^/]+)$' } } },
      { hosts: ['*', '*.example.com', 'api.example.com'], priority: -5 },
      { mirror: { upstream: 'shadow' }, rewrite: { regex: { pattern: '^/a/(.*)$', substitution: '/b/\\1' }, host: 'internal:8443' }, timeout_ms: 0 },
      { retries: { on: ['5xx', 'reset'], count: 2, per_try_timeout_ms: 500, backoff_base_ms: 10, backoff_max_ms: 100 } },
      { request_headers: { add: [{ name: 'x-a', value: '50%', append: true }], remove: ['x-b'] }, response_headers: { remove: ['server'] } },
      { auth: { mode: 'any', scopes: ['read', 'write'], jwt_providers: ['idp'] }, rate_limits: ['p1', 'p2'] },
      { cors: { allow_origins: ['*', 'https://a.example.com:8443', { regex: 'https://.*\\.example\\.com' }], allow_credentials: true, max_age_s: 60 } },
    ];
    for (const patch of valid) {
      const issues = issuesOf(RouteSchema, patched(ROUTE, patch));
      assert.deepEqual(issues, [], JSON.stringify(patch));
    }
  });

  it('accepts hostname, IPv4 and IPv6 endpoints and every lb policy', () => {
    for (const host of ['localhost', 'users.svc.cluster.local', 'Users.Example.COM', '10.1.2.3', '::1', 'fe80::1']) {
      assert.deepEqual(issuesOf(UpstreamSchema, patched(UPSTREAM, { endpoints: [{ host, port: 80 }] })), [], host);
    }
    assert.equal(UpstreamSchema.safeParse(patched(UPSTREAM, { lb_policy: 'ring_hash', hash_key: { cookie: 'sid' } })).success, true);
    assert.equal(UpstreamSchema.safeParse(patched(UPSTREAM, { lb_policy: 'least_request' })).success, true);
    assert.equal(UpstreamSchema.safeParse(patched(UPSTREAM, { lb_policy: 'random', protocol: 'http2', tls: { sni: 'users.internal', verify: {} } })).success, true);
  });

  it('accepts credentials, providers and policies with their defaults', () => {
    assert.deepEqual(ConsumerSchema.parse(CONSUMER), { name: 'acme', tags: [], metadata: {} });
    assert.equal(CredentialSchema.safeParse({ ...(CREDENTIAL as object), expires_at: '2030-01-01T00:00:00Z' }).success, true);
    const provider = JwtProviderSchema.parse(PROVIDER);
    assert.deepEqual(provider.algorithms, ['RS256']);
    assert.equal(provider.clock_skew_s, 30);
    assert.equal(JwtProviderSchema.safeParse(patched(PROVIDER, { jwks_uri: undefined, jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] } })).success, true);
    assert.equal(RateLimitPolicySchema.parse(POLICY).algorithm, 'sliding_window');
    assert.equal(RateLimitPolicySchema.safeParse(patched(POLICY, { key: ['route', 'consumer', { header: 'x-tenant' }] })).success, true);
  });
});

describe('model: RE2 check', () => {
  const accepted = ['/users/[0-9]+', '^/api/v[0-9]+/users/[a-z0-9-]+$', '(?i)/foo', '(?P<id>[^/]+)', 'a*?', '[*+]+', 'x}+', '[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}', '\\Qa.b\\E', '\\A/x\\z'];
  // Messages are RE2's own (re2js decides syntax; see model/re2.ts).
  const rejected: Array<[string, RegExp]> = [
    ['a(?=b)', /unsupported Perl syntax: `\(\?=`/],
    ['a(?!b)', /unsupported Perl syntax: `\(\?!`/],
    ['(?<=a)b', /invalid named capture/],
    ['(?<!a)b', /invalid named capture/],
    ['(a)\\1', /invalid escape sequence: `\\1`/],
    ['(?<n>a)\\k<n>', /invalid escape sequence: `\\k`/],
    ['(?>a)', /unsupported Perl syntax/],
    ['a++', /invalid nested repetition operator/],
    ['a{1,3}+', /invalid nested repetition operator/],
    ['a{1001}', /invalid repeat count/],
    ['(?(1)a|b)', /unsupported Perl syntax/],
    ['(', /invalid regex/],
    ['[a-z', /invalid regex/],
    ['', /empty/],
    ['\\pL+', /Unicode classes/],
    ['[a-z]{1,300}', /too complex/],
  ];
  for (const pattern of accepted) it(`accepts ${pattern}`, () => assert.equal(re2Problem(pattern), undefined));
  for (const [pattern, reason] of rejected) it(`rejects ${JSON.stringify(pattern)}`, () => assert.match(re2Problem(pattern) ?? '', reason));

  it('estimates program size as an upper bound of RE2 for typical patterns', () => {
    // Sizes reported by Envoy 1.38 (re2.max_program_size.error_level exceeded).
    const real: Array<[string, number]> = [['[a-z0-9]{1,36}', 111], ['/users/[0-9]+', 13], ['/items/[^/]+/detail/[^/]+/sub/[^/]+/more', 56]];
    for (const [pattern, size] of real) {
      const estimate = estimateProgramSize(pattern);
      assert.ok(estimate >= size && estimate <= 2 * size, `${pattern}: estimate ${estimate}, Envoy ${size}`);
    }
  });
});

describe('model: identity headers', () => {
  it('treats x-sluice-*, x-user-id and x-consumer-id as identity headers', () => {
    for (const name of ['x-sluice-consumer', 'x-sluice-anything', 'x-user-id', 'x-consumer-id']) assert.equal(isIdentityHeader(name), true, name);
    for (const name of ['x-user', 'x-request-id', 'authorization']) assert.equal(isIdentityHeader(name), false, name);
  });
});

/** A valid declarative config with one of everything, referencing each other. */
function config(): DeclarativeConfigInput {
  return {
    upstreams: [
      { name: 'a', endpoints: [{ host: '10.0.0.1', port: 80 }] },
      { name: 'b', endpoints: [{ host: '10.0.0.2', port: 80 }] },
    ],
    routes: [
      {
        name: 'r1',
        match: { path: { prefix: '/a' } },
        action: { split: [{ upstream: 'a', weight: 60 }, { upstream: 'b', weight: 40 }] },
        mirror: { upstream: 'b', percent: 10 },
        auth: { mode: 'jwt', jwt_providers: ['idp'] },
        rate_limits: ['p'],
      },
      { name: 'r2', match: { path: { prefix: '/b' } }, action: { canary: { primary: 'a', canary: 'b', weight: 5 } } },
    ],
    consumers: [{ name: 'acme' }],
    credentials: [
      { name: 'k1', consumer: 'acme', kind: 'api_key' },
      { name: 'j1', consumer: 'acme', kind: 'jwt_subject', jwt: { provider: 'idp', subject: 'user-1' } },
    ],
    jwt_providers: [{ name: 'idp', issuer: 'https://idp/', jwks_uri: 'https://idp/jwks' }],
    rate_limit_policies: [{ name: 'p', key: ['consumer'], limit: { requests: 100, per: 'minute' } }],
  };
}

type StateCase = [label: string, change: (c: DeclarativeConfigInput) => void, path: (string | number)[]];

const INVALID_STATES: StateCase[] = [
  ['duplicate upstream name', (c) => c.upstreams!.push({ name: 'a', endpoints: [{ host: '10.9.9.9', port: 1 }] }), ['upstreams', 2, 'name']],
  ['duplicate route name', (c) => c.routes!.push({ name: 'r1', match: { path: { prefix: '/z' } }, action: { upstream: 'a' } }), ['routes', 2, 'name']],
  ['duplicate consumer name', (c) => c.consumers!.push({ name: 'acme' }), ['consumers', 1, 'name']],
  ['duplicate credential name', (c) => c.credentials!.push({ name: 'k1', consumer: 'acme', kind: 'api_key' }), ['credentials', 2, 'name']],
  ['duplicate provider name', (c) => c.jwt_providers!.push({ name: 'idp', issuer: 'x', jwks_uri: 'https://x/jwks' }), ['jwt_providers', 1, 'name']],
  ['duplicate policy name', (c) => c.rate_limit_policies!.push({ name: 'p', key: ['route'], limit: { requests: 1, per: 'day' } }), ['rate_limit_policies', 1, 'name']],
  ['unknown upstream', (c) => c.routes!.push({ name: 'r3', match: { path: { prefix: '/c' } }, action: { upstream: 'nope' } }), ['routes', 2, 'action', 'upstream']],
  ['unknown split upstream', (c) => { c.routes![0]!.action = { split: [{ upstream: 'a', weight: 50 }, { upstream: 'nope', weight: 50 }] }; }, ['routes', 0, 'action', 'split', 1, 'upstream']],
  ['unknown canary upstream', (c) => { c.routes![1]!.action = { canary: { primary: 'a', canary: 'nope' } }; }, ['routes', 1, 'action', 'canary', 'canary']],
  ['unknown mirror upstream', (c) => { c.routes![0]!.mirror = { upstream: 'nope' }; }, ['routes', 0, 'mirror', 'upstream']],
  ['unknown rate-limit policy', (c) => { c.routes![0]!.rate_limits = ['p', 'nope']; }, ['routes', 0, 'rate_limits', 1]],
  ['unknown JWT provider on a route', (c) => { c.routes![0]!.auth = { mode: 'jwt', jwt_providers: ['nope'] }; }, ['routes', 0, 'auth', 'jwt_providers', 0]],
  ['jwt auth with no provider configured', (c) => { c.jwt_providers = []; c.credentials = [c.credentials![0]!]; c.routes![0]!.auth = { mode: 'jwt' }; }, ['routes', 0, 'auth', 'mode']],
  ['ambiguous routes (the later is reported)', (c) => c.routes!.push({ name: 'r0', match: { path: { prefix: '/a' } }, action: { upstream: 'b' } }), ['routes', 2, 'match']],
  ['credential for an unknown consumer', (c) => { c.credentials![0]!.consumer = 'nope'; }, ['credentials', 0, 'consumer']],
  ['credential for an unknown provider', (c) => { c.credentials![1]!.jwt = { provider: 'nope', subject: 's' }; }, ['credentials', 1, 'jwt', 'provider']],
  ['two credentials for one JWT subject', (c) => c.credentials!.push({ name: 'j2', consumer: 'acme', kind: 'jwt_subject', jwt: { provider: 'idp', subject: 'user-1' } }), ['credentials', 2, 'jwt', 'subject']],
  ['schema error inside the config', (c) => { c.upstreams![0]!.endpoints = [{ host: '10.0.0.1', port: 0 }]; }, ['upstreams', 0, 'endpoints', 0, 'port']],
  ['unknown top-level field', (c) => { (c as Record<string, unknown>).services = []; }, ['services']],
];

describe('model: cross-object rules (validateState / parseDeclarativeConfig)', () => {
  it('accepts a consistent config', () => {
    const result = parseDeclarativeConfig(config());
    assert.equal(result.ok, true, JSON.stringify(result));
  });

  for (const [label, change, path] of INVALID_STATES) {
    it(`rejects: ${label}`, () => {
      const c = config();
      change(c);
      const result = parseDeclarativeConfig(c);
      assert.equal(result.ok, false);
      if (!result.ok) assertRejectedAt(result.issues, path, label);
    });
  }

  it('does not call routes ambiguous when priority, hosts or matchers differ', () => {
    const variants: Array<Record<string, unknown>> = [
      { priority: 1 },
      { hosts: ['api.example.com'] },
      { match: { path: { prefix: '/a' }, methods: ['GET'] } },
      { match: { path: { prefix: '/a' }, headers: [{ name: 'x-a', exact: '1' }] } },
      { match: { path: { prefix: '/a' }, query: [{ name: 'q', present: true }] } },
      { match: { path: { exact: '/a' } } },
    ];
    for (const variant of variants) {
      const c = config();
      c.routes!.push({ name: 'r9', match: { path: { prefix: '/a' } }, action: { upstream: 'a' }, ...variant } as NonNullable<DeclarativeConfigInput['routes']>[number]);
      assert.deepEqual(parseDeclarativeConfig(c), { ok: true, value: DeclarativeConfigSchema.parse(c) }, JSON.stringify(variant));
    }
  });

  it('checks split weights in validateState too (for States built without the schema)', () => {
    const state = StateSchema.parse({ revision: 3, ...config() });
    state.routes[0]!.action.split![1]!.weight = 39;
    assertRejectedAt(validateState(state), ['routes', 0, 'action', 'split'], 'split 99');
  });

  it('parses whole States, and an empty State is valid', () => {
    assert.equal(parseState({ revision: 7, ...config() }).ok, true);
    assert.deepEqual(validateState(emptyState()), []);
    const bad = parseState({ ...config() });
    assert.equal(bad.ok, false);
    if (!bad.ok) assertRejectedAt(bad.issues, ['revision'], 'missing revision');
  });
});
