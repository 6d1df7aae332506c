// model/ is the gate: what it admits, every Envoy accepts (issue 7). One describe
// per item: regex syntax decided by RE2 (re2js), RE2 program size against the limit
// the bootstrap sets, hosts that look like IPs, byte limits, the text rule (NUL
// and lone surrogates anywhere), claim headers, and the case-insensitive path
// option. The pinned Envoy judges the same inputs in
// test/e2e/model-gate-envoy.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import {
  ConsumerSchema,
  CredentialSchema,
  DeclarativeConfigSchema,
  EndpointHostSchema,
  type Issue,
  JwtProviderSchema,
  RateLimitPolicySchema,
  RouteSchema,
  type Route,
  StateSchema,
  UpstreamSchema,
  isIpLiteral,
  captureGroupCount,
  cookieCanaryRegex,
  estimateProgramSize,
  issuesFromZod,
  matcherKey,
  parseDeclarativeConfig,
  re2Problem,
} from '../../control-plane/src/model/index.ts';
import { ENVOY_RE2_PROGRAM_SIZE_LIMIT, MAX_ESTIMATED_PROGRAM_SIZE } from '../../control-plane/src/model/re2.ts';
import { routeMatch } from '../../control-plane/src/translate/routes.ts';
import { compareRoutes } from '../../control-plane/src/translate/order.ts';
import { adsBootstrap } from '../../envoy/bootstrap.ts';

/** Fixed seed: the suite is deterministic; bench/re2-calibrate.ts runs random seeds. */
const SEED = 7;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

function issuesOf(schema: z.ZodType, input: unknown): Issue[] {
  const result = schema.safeParse(input);
  return result.success ? [] : issuesFromZod(result.error);
}

function assertRefusedAt(issues: Issue[], path: (string | number)[], label: string, message?: RegExp): void {
  const hit = issues.find((issue) => JSON.stringify(issue.path) === JSON.stringify(path));
  assert.ok(hit, `${label}: expected an issue at ${JSON.stringify(path)}, got ${JSON.stringify(issues)}`);
  if (message) assert.match(hit.message, message, label);
}

function route(extra: Record<string, Json>): Record<string, Json> {
  return { name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'u' }, ...extra };
}

// ---- 1. regex syntax --------------------------------------------------------------

/** Escapes and classes RE2 refuses that JavaScript (the old checker) accepted (issue 7.1). */
const JS_ONLY_REGEXES = ['\\y', '\\cA', '\\Z', '\\e', '\\k', '\\G', '\\R', '\\h', '\\N', '\\u0041', '\\é', '[\\b]', '[\\1]', '[a-\\d]'];

/** Every place a user regex goes, with the path of the field. */
const REGEX_FIELDS: Array<{ where: string; route: (regex: string) => Record<string, Json>; path: (string | number)[] }> = [
  { where: 'path', route: (regex) => route({ match: { path: { regex } } }), path: ['match', 'path', 'regex'] },
  { where: 'header', route: (regex) => route({ match: { path: { prefix: '/' }, headers: [{ name: 'x-a', regex }] } }), path: ['match', 'headers', 0, 'regex'] },
  { where: 'query', route: (regex) => route({ match: { path: { prefix: '/' }, query: [{ name: 'q', regex }] } }), path: ['match', 'query', 0, 'regex'] },
  { where: 'cors origin', route: (regex) => route({ cors: { allow_origins: [{ regex }] } }), path: ['cors', 'allow_origins', 0, 'regex'] },
  {
    where: 'rewrite',
    route: (regex) => route({ match: { path: { regex: '/.*' } }, rewrite: { regex: { pattern: regex, substitution: '/' } } }),
    path: ['rewrite', 'regex', 'pattern'],
  },
];

describe('model gate: regex syntax is RE2 syntax (7.1)', () => {
  for (const pattern of JS_ONLY_REGEXES) {
    it(`refuses ${JSON.stringify(pattern)} in every regex field`, () => {
      assert.match(re2Problem(pattern) ?? '', /invalid/);
      for (const field of REGEX_FIELDS) assertRefusedAt(issuesOf(RouteSchema, field.route(pattern)), field.path, field.where, /invalid/);
    });
  }

  it('accepts the RE2-only spellings Envoy takes', () => {
    for (const pattern of ['(?U)a+', '\\Qa.b\\E', '[[:alpha:]]+', '(?P<id>[0-9]+)', '(?<id>[0-9]+)', '\\x{41}', '\\A/x\\z', '(?i)/Api', '\\123', '(?s).']) {
      assert.equal(re2Problem(pattern), undefined, pattern);
    }
  });

  it('refuses what C++ RE2 and re2js might judge differently (\\p classes, \\C)', () => {
    for (const pattern of ['\\pL', '\\p{Greek}', '[\\PN]', '\\C']) assert.notEqual(re2Problem(pattern), undefined, pattern);
    assert.equal(re2Problem('\\Q\\pL\\E'), undefined, 'quoted text is literal');
  });

  it('agrees with RE2JS on every escape `\\` + any character (generated)', () => {
    fc.assert(
      fc.property(fc.constantFrom('', '[', '[a-'), fc.integer({ min: 0x20, max: 0x10ffff }).map((code) => String.fromCodePoint(code)), (prefix, char) => {
        const pattern = `${prefix}\\${char}${prefix === '' ? '' : ']'}`;
        let compiles = true;
        try {
          RE2JS.compile(pattern);
        } catch {
          compiles = false;
        }
        const special = ['p', 'P', '\0'].includes(char) || /\p{Cs}/u.test(char);
        if (!special) assert.equal(re2Problem(pattern) === undefined, compiles, pattern);
        if (!compiles) assert.notEqual(re2Problem(pattern), undefined, pattern);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('counts capture groups as RE2 does (rewrite substitutions)', () => {
    assert.equal(captureGroupCount('\\Q(\\E(a)'), 1);
    assert.equal(captureGroupCount('(?P<x>a)(?:b)(c)'), 2);
    const ok = route({ match: { path: { regex: '/\\Q(\\E(a)' } }, rewrite: { regex: { pattern: '/\\Q(\\E(a)', substitution: '/\\1' } } });
    assert.deepEqual(issuesOf(RouteSchema, ok), []);
    const bad = route({ match: { path: { regex: '/\\Q(\\E(a)' } }, rewrite: { regex: { pattern: '/\\Q(\\E(a)', substitution: '/\\2' } } });
    assertRefusedAt(issuesOf(RouteSchema, bad), ['rewrite', 'regex', 'substitution'], 'group 2');
  });
});

// ---- 2. program size ----------------------------------------------------------------

describe('model gate: RE2 program size (7.2)', () => {
  it('writes the limit the model checks against into the bootstrap', () => {
    const bootstrap = adsBootstrap({ nodeId: 'n', nodeCluster: 'c', adsHost: '127.0.0.1', adsPort: 1, adminPort: 2 });
    const layers = (bootstrap.layered_runtime as { layers: Array<{ static_layer?: Record<string, unknown> }> }).layers;
    const values = Object.assign({}, ...layers.map((layer) => layer.static_layer ?? {})) as Record<string, unknown>;
    assert.equal(values['re2.max_program_size.error_level'], ENVOY_RE2_PROGRAM_SIZE_LIMIT);
    assert.ok(MAX_ESTIMATED_PROGRAM_SIZE < ENVOY_RE2_PROGRAM_SIZE_LIMIT);
    // The shipped bootstrap (docker-compose) carries the same runtime.
    const shipped = parseYaml(readFileSync(new URL('../../deploy/envoy-bootstrap.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(shipped.layered_runtime, bootstrap.layered_runtime);
  });

  it('bounds multi-byte text from above (Envoy: 131 for / + 日本語 x14)', () => {
    const pattern = `/${'日本語'.repeat(14)}`;
    assert.ok(estimateProgramSize(pattern) >= 131, `estimate ${estimateProgramSize(pattern)}`);
    assert.equal(re2Problem(pattern), undefined);
  });

  it('bounds the canary cookie regex from above (Envoy: 106 for a 70-character value)', () => {
    const regex = cookieCanaryRegex('canary', 'v'.repeat(70));
    assert.ok(estimateProgramSize(regex) >= 106, `estimate ${estimateProgramSize(regex)}`);
  });

  it('refuses a 1,024-character canary cookie value at the cookie field', () => {
    const canary = (value: string) => route({ action: { canary: { primary: 'a', canary: 'b', cookie: { name: 'canary', value } } } });
    assertRefusedAt(issuesOf(RouteSchema, canary('v'.repeat(1024))), ['action', 'canary', 'cookie', 'value'], '1024', /too long/);
    assert.deepEqual(issuesOf(RouteSchema, canary('v'.repeat(500))), []);
  });

  it('keeps the methods alternation translate/ generates within the check', () => {
    const parsed = RouteSchema.parse(route({ match: { path: { prefix: '/' }, methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'CONNECT', 'TRACE'] }, cors: { allow_origins: ['*'] } }));
    const methods = routeMatch(parsed, []).headers?.find((header) => header.name === ':method');
    const regex = methods?.string_match?.safe_regex?.regex;
    assert.ok(regex && regex.includes('OPTIONS'), JSON.stringify(methods));
    assert.equal(re2Problem(regex), undefined);
  });

  it('refuses regexes whose bound exceeds the limit, naming the field', () => {
    assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { regex: '/[a-z0-9]{1,300}' } } })), ['match', 'path', 'regex'], 'big', /too complex/);
  });
});

// ---- 3. IP-looking hosts --------------------------------------------------------------

describe('model gate: hosts that look like IPs but are not (7.3)', () => {
  const upstream = (host: string) => ({ name: 'u', endpoints: [{ host, port: 80 }] });

  for (const host of ['999.1.1.1', '01.2.3.4', '1.2.3.256', '1.2.3', '0x7f.1.1.1', '1.2.3.4.5', '10.0.0.01', 'fe80::1%eth0']) {
    it(`refuses endpoint host ${host} at the host field`, () => {
      const issues = DeclarativeConfigSchema.safeParse({ upstreams: [upstream(host)] });
      assert.equal(issues.success, false);
      assertRefusedAt(issuesFromZod(issues.error!), ['upstreams', 0, 'endpoints', 0, 'host'], host);
      // A zone is an IP to node (and to translate/), but the model refuses it first.
      if (!host.includes('%')) assert.equal(isIpLiteral(host), false, `isIpLiteral(${host})`);
    });
  }

  it('accepts real IPs and DNS names', () => {
    for (const host of ['10.0.0.1', '255.255.255.255', '::1', '2001:db8::1', '::ffff:10.0.0.1', 'users.internal', 'a1.b2', '123.example.com', 'Users.Internal']) {
      assert.deepEqual(issuesOf(EndpointHostSchema, host), [], host);
    }
  });

  it('admits a dotted-number host exactly when node says it is an IP (generated)', () => {
    // Numbers and hex-looking parts only: such a name is never a DNS name, so it must be an exact IP.
    const part = fc.oneof(fc.nat(400).map(String), fc.constantFrom('0', '00', '01', '0x7f', '0x', '255', '256', '0001'));
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), (parts) => {
        const host = parts.join('.');
        const ip = isIP(host) !== 0;
        assert.equal(EndpointHostSchema.safeParse(host).success, ip, host);
        assert.equal(isIpLiteral(host), ip, host);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

// ---- 4. byte limits -------------------------------------------------------------------

describe('model gate: limits Envoy counts in bytes are checked in bytes (7.6)', () => {
  const wide = '日'; // 3 bytes in UTF-8, 1 UTF-16 unit

  it('refuses a header value of 8,192 three-byte characters (24 KiB; Envoy caps values at 16 KiB)', () => {
    const add = route({ request_headers: { add: [{ name: 'x-a', value: wide.repeat(8192) }] } });
    assertRefusedAt(issuesOf(RouteSchema, add), ['request_headers', 'add', 0, 'value'], 'add', /bytes/);
    const match = route({ match: { path: { prefix: '/' }, headers: [{ name: 'x-a', exact: wide.repeat(8192) }] } });
    assertRefusedAt(issuesOf(RouteSchema, match), ['match', 'headers', 0, 'exact'], 'match', /bytes/);
    assert.deepEqual(issuesOf(RouteSchema, route({ request_headers: { add: [{ name: 'x-a', value: wide.repeat(2730) }] } })), []);
  });

  it('counts path, regex and query lengths in bytes', () => {
    assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { prefix: `/${wide.repeat(400)}` } } })), ['match', 'path', 'prefix'], 'prefix', /bytes/);
    assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { regex: `/${wide.repeat(400)}` } } })), ['match', 'path', 'regex'], 'regex', /bytes/);
    assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { prefix: '/' }, query: [{ name: 'é'.repeat(200), present: true }] } })), ['match', 'query', 0, 'name'], 'query', /bytes/);
  });
});

// ---- 5. the text rule -------------------------------------------------------------------

const BAD_TEXT = ['\0', '\udfff', '\ud800'];

/** Objects with (almost) every string field filled, for the "no field forgotten" walk. */
const FULL_ROUTE: Record<string, Json> = {
  name: 'full',
  hosts: ['api.example.com'],
  match: {
    path: { prefix: '/api' },
    headers: [{ name: 'x-h', exact: 'v' }, { name: 'x-p', prefix: 'p' }],
    query: [{ name: 'q', exact: 'v' }],
  },
  action: { canary: { primary: 'a', canary: 'b', header: { name: 'x-canary', value: 'yes' }, cookie: { name: 'c', value: 'v' } } },
  rewrite: { prefix: '/v2', host: 'upstream.internal' },
  request_headers: { add: [{ name: 'x-add', value: 'v' }], remove: ['x-remove'] },
  response_headers: { add: [{ name: 'x-radd', value: 'v' }], remove: ['x-rremove'] },
  auth: { mode: 'jwt', scopes: ['read'], jwt_providers: ['idp'] },
  cors: { allow_origins: ['https://a.example'], allow_headers: ['x-h'], expose_headers: ['x-e'] },
};
const DIRECT_ROUTE: Record<string, Json> = { name: 'direct', match: { path: { exact: '/x' } }, action: { direct_response: { status: 200, body: 'hello' } } };
const REDIRECT_ROUTE: Record<string, Json> = { name: 'redirect', match: { path: { prefix: '/old' } }, action: { redirect: { path: '/new', host: 'new.example.com' } } };
const FULL_CONSUMER: Record<string, Json> = { name: 'acme', tags: ['gold'], metadata: { plan: 'gold', region: 'eu' } };
const FULL_CREDENTIAL: Record<string, Json> = { name: 'sub', consumer: 'acme', kind: 'jwt_subject', jwt: { provider: 'idp', subject: 'user-1' } };
const FULL_PROVIDER: Record<string, Json> = {
  name: 'idp',
  issuer: 'https://idp.example.com/',
  jwks: { keys: [{ kty: 'RSA', kid: 'k1', n: 'abc', e: 'AQAB', x5c: ['MIIB'] }] },
  audiences: ['api'],
  claims_to_headers: [{ claim: 'org.id', header: 'x-org-id' }],
};
const FULL_POLICY: Record<string, Json> = { name: 'p', key: ['route', { header: 'x-tenant' }], limit: { requests: 10, per: 'second' } };
const FULL_UPSTREAM: Record<string, Json> = {
  name: 'u',
  endpoints: [{ host: 'users.internal', port: 80 }],
  health_check: { path: '/healthz' },
  lb_policy: 'ring_hash',
  hash_key: { header: 'x-user' },
  tls: { sni: 'users.internal' },
};

/** Every string leaf of `value` (and its path), object keys included as their own kind. */
function stringLeaves(value: Json, path: (string | number)[] = []): Array<{ path: (string | number)[]; key?: boolean }> {
  if (typeof value === 'string') return [{ path }];
  if (Array.isArray(value)) return value.flatMap((item, index) => stringLeaves(item, [...path, index]));
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => [{ path: [...path, key], key: true }, ...stringLeaves(item, [...path, key])]);
  }
  return [];
}

/** A deep copy of `value` with the string (or the key) at `path` spoiled by `bad` at `at`. */
function spoiled(value: Json, path: (string | number)[], key: boolean, bad: string, at: number): Json {
  const copy = structuredClone(value) as Json;
  let parent = copy as Record<string | number, Json>;
  for (const segment of path.slice(0, -1)) parent = parent[segment] as Record<string | number, Json>;
  const last = path.at(-1)!;
  const insert = (text: string) => text.slice(0, at % (text.length + 1)) + bad + text.slice(at % (text.length + 1));
  if (key) {
    const item = parent[last]!;
    delete parent[last];
    parent[insert(String(last))] = item;
  } else {
    parent[last] = insert(parent[last] as string);
  }
  return copy;
}

/**
 * True when an issue at `path` names `field`: the field itself or something inside
 * it, or the object right above it (a list or record refusing one entry).
 */
function namesField(path: (string | number)[], field: (string | number)[]): boolean {
  const prefix = (a: (string | number)[], b: (string | number)[]) => JSON.stringify(b.slice(0, a.length)) === JSON.stringify(a);
  return prefix(field, path) || (prefix(path, field) && path.length >= field.length - 1);
}

const TEXT_KINDS: Array<{ kind: string; schema: z.ZodType; value: Record<string, Json>; wrap?: (value: Json) => Json; base?: (string | number)[] }> = [
  { kind: 'route', schema: RouteSchema, value: FULL_ROUTE },
  { kind: 'direct route', schema: RouteSchema, value: DIRECT_ROUTE },
  { kind: 'redirect route', schema: RouteSchema, value: REDIRECT_ROUTE },
  { kind: 'consumer', schema: ConsumerSchema, value: FULL_CONSUMER },
  { kind: 'credential', schema: CredentialSchema, value: FULL_CREDENTIAL },
  { kind: 'jwt provider', schema: JwtProviderSchema, value: FULL_PROVIDER },
  { kind: 'rate-limit policy', schema: RateLimitPolicySchema, value: FULL_POLICY },
  // Upstreams are checked through the whole config (the store validates every write that way).
  { kind: 'upstream (in a config)', schema: DeclarativeConfigSchema, value: FULL_UPSTREAM, wrap: (u) => ({ upstreams: [u] }), base: ['upstreams', 0] },
];

describe('model gate: no NUL or lone surrogate in any string (7.7, model side)', () => {
  for (const { kind, schema, value, wrap, base } of TEXT_KINDS) {
    it(`the ${kind} fixture is valid`, () => assert.deepEqual(issuesOf(schema, wrap ? wrap(value) : value), []));

    it(`refuses a bad character in every string field of a ${kind}, naming the field (generated)`, () => {
      const leaves = stringLeaves(value);
      fc.assert(
        fc.property(fc.constantFrom(...leaves), fc.constantFrom(...BAD_TEXT), fc.nat(64), (leaf, bad, at) => {
          const input = spoiled(value, leaf.path, leaf.key === true, bad, at);
          const issues = issuesOf(schema, wrap ? wrap(input) : input);
          const field = [...(base ?? []), ...(leaf.key ? leaf.path.slice(0, -1) : leaf.path)];
          assert.ok(issues.length > 0, `${JSON.stringify(leaf.path)}: admitted`);
          assert.ok(issues.some((issue) => namesField(issue.path, field)), `${JSON.stringify(leaf.path)}: issues ${JSON.stringify(issues)}`);
        }),
        { seed: SEED, numRuns: Math.min(300, leaves.length * 6) },
      );
    });
  }

  const examples: Array<[string, z.ZodType, Json, (string | number)[]]> = [
    ['direct-response body', RouteSchema, { ...DIRECT_ROUTE, action: { direct_response: { status: 200, body: 'a\0b' } } }, ['action', 'direct_response', 'body']],
    ['path prefix "/\\udfff"', RouteSchema, route({ match: { path: { prefix: '/\udfff' } } }), ['match', 'path', 'prefix']],
    ['query matcher value', RouteSchema, route({ match: { path: { prefix: '/' }, query: [{ name: 'q', exact: '\0' }] } }), ['match', 'query', 0, 'exact']],
    ['consumer metadata value', ConsumerSchema, { name: 'c', metadata: { k: '\udfff' } }, ['metadata', 'k']],
    ['consumer metadata key', ConsumerSchema, { name: 'c', metadata: { 'k\0': 'v' } }, ['metadata']],
    ['JWT issuer', JwtProviderSchema, { ...FULL_PROVIDER, issuer: 'https://idp\0/' }, ['issuer']],
    ['JWT audience', JwtProviderSchema, { ...FULL_PROVIDER, audiences: ['\ud800'] }, ['audiences', 0]],
    ['claim name', JwtProviderSchema, { ...FULL_PROVIDER, claims_to_headers: [{ claim: 'a\udfff', header: 'x-a' }] }, ['claims_to_headers', 0, 'claim']],
    ['JWT subject', CredentialSchema, { ...FULL_CREDENTIAL, jwt: { provider: 'idp', subject: 'a\0' } }, ['jwt', 'subject']],
    ['health-check path', DeclarativeConfigSchema, { upstreams: [{ ...FULL_UPSTREAM, health_check: { path: '/\udfff' } }] }, ['upstreams', 0, 'health_check', 'path']],
  ];
  for (const [label, schema, input, path] of examples) {
    it(`refuses ${label} with NUL or a lone surrogate`, () => assertRefusedAt(issuesOf(schema, input), path, label, /NUL|Unicode/));
  }

  it('applies to a whole State and config as well', () => {
    const state = { revision: 1, consumers: [{ name: 'c', metadata: { k: 'a\0' } }] };
    assertRefusedAt(issuesOf(StateSchema, state), ['consumers', 0, 'metadata', 'k'], 'state');
    const parsed = parseDeclarativeConfig({ routes: [{ ...DIRECT_ROUTE, action: { direct_response: { status: 200, body: '\udfff' } } }] });
    assert.equal(parsed.ok, false);
  });

  it('refuses a 10,000-level nested JWK as a field issue, without a stack overflow', () => {
    let deep: Json = 'x';
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    const provider = { ...FULL_PROVIDER, jwks: { keys: [{ kty: 'RSA', n: 'abc', e: 'AQAB', x: deep }] } };
    assertRefusedAt(issuesOf(JwtProviderSchema, provider), ['jwks', 'keys', 0, 'x'], 'deep JWK');
    const parsed = parseDeclarativeConfig({ jwt_providers: [provider] });
    assert.equal(parsed.ok, false);
    const topLevel = { ...FULL_PROVIDER, jwks: { keys: [{ kty: 'RSA', n: 'abc', e: 'AQAB' }], extra: deep } };
    assertRefusedAt(issuesOf(JwtProviderSchema, topLevel), ['jwks', 'extra'], 'deep JWKS member');
  });
});

// ---- 6. header names ---------------------------------------------------------------------

describe('model gate: header names by what Sluice does with them (7.12)', () => {
  const claim = (header: string) => ({ ...FULL_PROVIDER, claims_to_headers: [{ claim: 'sub', header }] });
  const refusedClaims = [
    'host', ':authority', 'content-length', 'transfer-encoding', 'connection', 'te', 'upgrade', 'keep-alive', 'proxy-connection',
    'authorization', 'proxy-authorization', 'cookie', 'x-forwarded-for', 'x-forwarded-proto', 'x-request-id', 'x-envoy-original-path',
    'content-type', 'x-sluice-consumer', 'x-sluice-anything',
  ];
  for (const header of refusedClaims) {
    it(`refuses claim header ${header}`, () => assertRefusedAt(issuesOf(JwtProviderSchema, claim(header)), ['claims_to_headers', 0, 'header'], header));
  }

  it('allows the identity headers meant for claims and ordinary headers', () => {
    for (const header of ['x-user-id', 'x-consumer-id', 'x-org-id', 'x-tenant']) assert.deepEqual(issuesOf(JwtProviderSchema, claim(header)), [], header);
  });

  it('keeps pseudo and framing headers out of route header mutations and matchers', () => {
    for (const name of ['host', 'content-length', 'connection', 'trailer']) {
      assertRefusedAt(issuesOf(RouteSchema, route({ request_headers: { add: [{ name, value: 'v' }] } })), ['request_headers', 'add', 0, 'name'], name);
      assertRefusedAt(issuesOf(RouteSchema, route({ response_headers: { remove: [name] } })), ['response_headers', 'remove', 0], name);
    }
    for (const name of [':authority', ':path', ':method']) {
      assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { prefix: '/' }, headers: [{ name, present: true }] } })), ['match', 'headers', 0, 'name'], name);
    }
  });
});

// ---- 7. case-insensitive paths ------------------------------------------------------------

describe('model gate: match.path.ignore_case (issue 8.4 option)', () => {
  const parsed = (path: Record<string, Json>, name = 'r'): Route => RouteSchema.parse({ ...route({ match: { path } }), name });

  it('translates to case_sensitive false for prefix and exact, and to nothing when unset', () => {
    assert.deepEqual(routeMatch(parsed({ prefix: '/api/admin', ignore_case: true }), []).case_sensitive, { value: false });
    assert.deepEqual(routeMatch(parsed({ exact: '/api/admin', ignore_case: true }), []).case_sensitive, { value: false });
    assert.equal(routeMatch(parsed({ prefix: '/api/admin' }), []).case_sensitive, undefined);
    assert.equal(routeMatch(parsed({ prefix: '/api/admin', ignore_case: false }), []).case_sensitive, undefined);
  });

  it('is refused with a regex (which has (?i))', () => {
    assertRefusedAt(issuesOf(RouteSchema, route({ match: { path: { regex: '/a', ignore_case: true } } })), ['match', 'path', 'ignore_case'], 'regex');
  });

  it('makes two routes different matchers, and orders the case-sensitive one first', () => {
    const sensitive = parsed({ prefix: '/api' }, 'b');
    const insensitive = parsed({ prefix: '/api', ignore_case: true }, 'a');
    assert.notEqual(matcherKey(sensitive), matcherKey(insensitive));
    assert.deepEqual([insensitive, sensitive].sort(compareRoutes).map((r) => r.name), ['b', 'a']);
  });
});

describe('model gate: control characters in paths (found by the property test)', () => {
  it('refuses every C0 control and DEL in a health-check path and a route path, naming the field', () => {
    for (let code = 0; code < 0x20; code++) assertPathRefused(String.fromCharCode(code));
    assertPathRefused('\x7f');
  });
});

function assertPathRefused(control: string): void {
  const upstream = UpstreamSchema.safeParse({
    name: 'u',
    endpoints: [{ host: '127.0.0.1', port: 80 }],
    health_check: { path: `/a${control}` },
  });
  assert.equal(upstream.success, false, `health_check.path with U+${control.charCodeAt(0).toString(16).padStart(4, '0')}`);
  assert.deepEqual(upstream.error!.issues[0]!.path, ['health_check', 'path']);
  const route = RouteSchema.safeParse({ name: 'r', match: { path: { prefix: `/a${control}` } }, action: { upstream: 'u' } });
  assert.equal(route.success, false, `match.path.prefix with U+${control.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
