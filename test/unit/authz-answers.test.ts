// The answer cache (authz/answers.ts) may skip deciding, never change an answer:
// for generated sequences of checks, clock moves (forwards and back), new States
// (keys revoked, credentials expiring, scopes and claim mappings changed) and
// JWKS key rotations at a real JWKS server on loopback, a service that answers
// from its cache gives byte for byte the answers of one that decides every check.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AUTHZ_CONTEXT } from '../../control-plane/src/model/index.ts';
import { AnswerCache, answerKey } from '../../control-plane/src/authz/answers.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import type { WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import { generateApiKey } from '../../control-plane/src/store/api-keys.ts';
import { parseTestState } from '../helpers/gateway.ts';
import { makeSigningKey, startJwksServer, type JwksServer, type SigningKey } from '../helpers/jwks-server.ts';

const SECRET = 'unit-authz-answers-secret-0123456789abcdef';
const REMOTE_ISS = 'https://issuer.test/answers-remote';
const INLINE_ISS = 'https://issuer.test/answers-inline';
const T0 = 1_800_000_000_000; // the test clock's start (ms)
const s = (ms: number) => Math.floor((T0 + ms) / 1000);

const keys = { alice: generateApiKey(SECRET), bob: generateApiKey(SECRET), carol: generateApiKey(SECRET) };
let remoteOld: SigningKey;
let remoteNew: SigningKey;
let inline: SigningKey;
let jwks: JwksServer;
let tokens: Record<string, string>;

before(async () => {
  remoteOld = await makeSigningKey('ES256', 'old');
  remoteNew = await makeSigningKey('ES256', 'new');
  inline = await makeSigningKey('RS256', 'in');
  jwks = await startJwksServer([remoteOld.jwk]);
  tokens = {
    mapped: await remoteOld.sign({ iss: REMOTE_ISS, aud: 'api', sub: 'alice-sub', scope: 'read write', exp: s(30_000) }),
    unmapped: await remoteOld.sign({ iss: REMOTE_ISS, aud: 'api', sub: 'nobody', scope: 'read', exp: s(90_000) }),
    // Not valid until 2 s in, expired at 6 s (with the provider's 1 s skew: 1 s to 7 s).
    window: await remoteOld.sign({ iss: REMOTE_ISS, aud: 'api', sub: 'w', nbf: s(2_000), exp: s(6_000) }),
    rotated: await remoteNew.sign({ iss: REMOTE_ISS, aud: 'api', sub: 'alice-sub', scope: 'read', exp: s(120_000) }),
    inline: await inline.sign({ iss: INLINE_ISS, sub: 'i', scp: ['read'], email: 'i@example.com', exp: s(45_000) }),
    garbage: 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA',
  };
});

after(async () => {
  await jwks?.close();
});

interface StateChoice {
  carolRevoked: boolean;
  bobExpiresMs: number | undefined;
  aliceTags: string[];
  subjectExpiresMs: number | undefined;
  mapEmail: boolean;
}

function stateOf(revision: number, choice: StateChoice) {
  const iso = (ms: number | undefined) => (ms === undefined ? {} : { expires_at: new Date(T0 + ms).toISOString() });
  return {
    state: parseTestState({
      revision,
      upstreams: [{ name: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
      routes: [{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'u' }, auth: { mode: 'any' } }],
      consumers: [
        { name: 'alice', tags: choice.aliceTags },
        { name: 'bob', tags: ['read'] },
        { name: 'carol', tags: ['read', 'write'] },
      ],
      credentials: [
        { name: 'alice-key', consumer: 'alice', kind: 'api_key' },
        { name: 'bob-key', consumer: 'bob', kind: 'api_key', ...iso(choice.bobExpiresMs) },
        { name: 'carol-key', consumer: 'carol', kind: 'api_key' },
        { name: 'alice-sub', consumer: 'alice', kind: 'jwt_subject', jwt: { provider: 'remote', subject: 'alice-sub' }, ...iso(choice.subjectExpiresMs) },
      ],
      jwt_providers: [
        { name: 'remote', issuer: REMOTE_ISS, audiences: ['api'], jwks_uri: jwks.url, algorithms: ['ES256'], clock_skew_s: 1 },
        {
          name: 'inline',
          issuer: INLINE_ISS,
          jwks: { keys: [inline.jwk as { kty: string }] },
          algorithms: ['RS256'],
          clock_skew_s: 0,
          claims_to_headers: choice.mapEmail ? [{ claim: 'email', header: 'x-user-email' }] : [],
        },
      ],
    }),
    apiKeys: [
      { credential: 'alice-key', keyHash: keys.alice.hash },
      { credential: 'bob-key', keyHash: keys.bob.hash },
      ...(choice.carolRevoked ? [] : [{ credential: 'carol-key', keyHash: keys.carol.hash }]),
    ],
  };
}

const ROUTES: Record<string, Record<string, string>> = {
  key: { [AUTHZ_CONTEXT.authMode]: 'api_key' },
  keyWrite: { [AUTHZ_CONTEXT.authMode]: 'api_key', [AUTHZ_CONTEXT.scopes]: 'write' },
  keyQuery: { [AUTHZ_CONTEXT.authMode]: 'any', [AUTHZ_CONTEXT.apiKeyQuery]: 'api_key' },
  jwtRemote: { [AUTHZ_CONTEXT.authMode]: 'jwt', [AUTHZ_CONTEXT.jwtProviders]: 'remote' },
  jwtBothRead: { [AUTHZ_CONTEXT.authMode]: 'jwt', [AUTHZ_CONTEXT.jwtProviders]: 'inline remote', [AUTHZ_CONTEXT.scopes]: 'read' },
  any: { [AUTHZ_CONTEXT.authMode]: 'any' },
};

type Credential = { kind: 'key'; name: keyof typeof keys; via: 'header' | 'bearer' | 'query' } | { kind: 'token'; name: string } | { kind: 'none' };

interface Check {
  route: string;
  credential: Credential;
  spoof: boolean;
  path: string;
}

// Checks are picked from a small pool per run, so the same request recurs (and can hit).
type Op =
  | { op: 'check'; pick: number }
  | { op: 'clock'; deltaMs: number }
  | { op: 'state'; choice: StateChoice }
  | { op: 'rotate'; keys: 'old' | 'new' | 'both' };

const stateChoice: fc.Arbitrary<StateChoice> = fc.record({
  carolRevoked: fc.boolean(),
  bobExpiresMs: fc.option(fc.integer({ min: 0, max: 40_000 }), { nil: undefined }),
  aliceTags: fc.constantFrom(['read'], ['read', 'write'], []),
  subjectExpiresMs: fc.option(fc.integer({ min: 0, max: 40_000 }), { nil: undefined }),
  mapEmail: fc.boolean(),
});

const credential: fc.Arbitrary<Credential> = fc.oneof(
  fc.record({ kind: fc.constant('key' as const), name: fc.constantFrom<keyof typeof keys>('alice', 'bob', 'carol'), via: fc.constantFrom<'header' | 'bearer' | 'query'>('header', 'bearer', 'query') }),
  fc.record({ kind: fc.constant('token' as const), name: fc.constantFrom('mapped', 'unmapped', 'window', 'rotated', 'inline', 'garbage') }),
  fc.constant({ kind: 'none' as const }),
);

const check: fc.Arbitrary<Check> = fc.record({
  route: fc.constantFrom(...Object.keys(ROUTES)),
  credential,
  spoof: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  path: fc.constantFrom('/x', '/x?a=1', '/y?api_key=zz'),
});

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('check' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('clock' as const), deltaMs: fc.integer({ min: -3_000, max: 9_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('state' as const), choice: stateChoice }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rotate' as const), keys: fc.constantFrom<'old' | 'new' | 'both'>('old', 'new', 'both') }) },
);

function requestOf(check: Check): WireCheckRequest {
  const headers: Record<string, string> = {};
  let path = check.path;
  const cred = check.credential;
  if (cred.kind === 'key') {
    const key = keys[cred.name].key;
    if (cred.via === 'header') headers['x-api-key'] = key;
    else if (cred.via === 'bearer') headers.authorization = `Bearer ${key}`;
    else path = `/q?api_key=${encodeURIComponent(key)}`;
  } else if (cred.kind === 'token') headers.authorization = `Bearer ${tokens[cred.name]}`;
  if (check.spoof) headers['x-sluice-consumer'] = 'mallory';
  return { attributes: { request: { http: { headers, path } }, context_extensions: { [AUTHZ_CONTEXT.route]: 'r', ...ROUTES[check.route] } } };
}

const pick = (n: number): Op => ({ op: 'check', pick: n });
const clock = (deltaMs: number): Op => ({ op: 'clock', deltaMs });
const noChange: StateChoice = { carolRevoked: false, bobExpiresMs: 15_000, aliceTags: ['read'], subjectExpiresMs: 20_000, mapEmail: true };

/** Sequences that always run: repeats that hit, then each thing that must end a hit. */
const EXAMPLES: Array<[StateChoice, Check[], Op[]]> = [
  // bob's key until it expires at 15 s, carol's until revoked, alice's across a scope change.
  [
    noChange,
    [
      { route: 'key', credential: { kind: 'key', name: 'bob', via: 'header' }, spoof: false, path: '/x' },
      { route: 'keyWrite', credential: { kind: 'key', name: 'carol', via: 'bearer' }, spoof: false, path: '/x' },
      { route: 'keyWrite', credential: { kind: 'key', name: 'alice', via: 'header' }, spoof: false, path: '/x' },
    ],
    [pick(0), pick(0), pick(1), pick(1), clock(14_999), pick(0), clock(1), pick(0), { op: 'state', choice: { ...noChange, carolRevoked: true, aliceTags: ['write'] } }, pick(1), pick(2), pick(2)],
  ],
  // A mapped token until its credential expires at 20 s; the window token across nbf and exp;
  // the old key's tokens after a rotation, once a new-kid token made the service refetch.
  [
    noChange,
    [
      { route: 'jwtRemote', credential: { kind: 'token', name: 'mapped' }, spoof: false, path: '/x' },
      { route: 'jwtRemote', credential: { kind: 'token', name: 'window' }, spoof: false, path: '/x' },
      { route: 'jwtBothRead', credential: { kind: 'token', name: 'rotated' }, spoof: false, path: '/x' },
      { route: 'jwtBothRead', credential: { kind: 'token', name: 'inline' }, spoof: false, path: '/x' },
    ],
    [pick(0), pick(0), pick(1), clock(1_000), pick(1), pick(1), clock(5_999), pick(1), clock(1), pick(1), pick(3), pick(3), { op: 'state', choice: { ...noChange, mapEmail: false } }, pick(3), pick(3), pick(0), clock(12_999), pick(0), clock(1), pick(0), clock(-3_000), pick(0), pick(0), { op: 'rotate', keys: 'new' }, pick(0), pick(2), pick(0), pick(2), pick(2)],
  ],
];

const JWKS_SETTINGS = { refetchCooldownMs: 0, defaultTtlMs: 24 * 3_600_000, minTtlMs: 24 * 3_600_000 };

test('answers from the cache are byte-identical to answers decided afresh', async () => {
  let hits = 0;
  await fc.assert(
    fc.asyncProperty(stateChoice, fc.array(check, { minLength: 1, maxLength: 4 }), fc.array(op, { minLength: 5, maxLength: 30 }), async (initial, pool, ops) => {
      jwks.setKeys([remoteOld.jwk]);
      let now = T0;
      const cached = new AuthzService({ secret: SECRET, now: () => now, jwks: JWKS_SETTINGS });
      const fresh = new AuthzService({ secret: SECRET, now: () => now, jwks: JWKS_SETTINGS, cacheAnswers: false });
      let revision = 1;
      const install = (choice: StateChoice) => {
        const input = stateOf(revision++, choice);
        cached.update(input);
        fresh.update(input);
      };
      try {
        install(initial);
        for (const step of ops) {
          if (step.op === 'clock') now += step.deltaMs;
          else if (step.op === 'state') install(step.choice);
          else if (step.op === 'rotate') jwks.setKeys(step.keys === 'old' ? [remoteOld.jwk] : step.keys === 'new' ? [remoteNew.jwk] : [remoteOld.jwk, remoteNew.jwk]);
          else {
            const request = requestOf(pool[step.pick % pool.length]!);
            const expected = Buffer.from(await fresh.answer(request));
            const actual = Buffer.from(await cached.answer(request));
            assert.deepEqual(actual, expected, `answer differs for ${JSON.stringify(pool[step.pick % pool.length])} at +${now - T0} ms`);
          }
        }
        hits += cached.metrics.snapshot().answersFromCache;
        assert.equal(fresh.metrics.snapshot().answersFromCache, 0);
      } finally {
        await Promise.all([cached.close(), fresh.close()]);
      }
    }),
    { numRuns: 150, examples: EXAMPLES },
  );
  // The property proves nothing if the cache never answered: the fixed examples
  // alone (they always run) hand back answers, so this bound is not statistical.
  assert.ok(hits >= 8, `only ${hits} answers came from the cache`);
});

test('an answer is handed back for the same route and credential, and not across a new State', async () => {
  const service = new AuthzService({ secret: SECRET, now: () => T0 });
  service.update(stateOf(1, { carolRevoked: false, bobExpiresMs: undefined, aliceTags: ['read'], subjectExpiresMs: undefined, mapEmail: false }));
  const request = requestOf({ route: 'key', credential: { kind: 'key', name: 'carol', via: 'header' }, spoof: false, path: '/x' });
  const first = Buffer.from(await service.answer(request));
  assert.deepEqual(Buffer.from(await service.answer(request)), first);
  assert.equal(service.metrics.snapshot().answersFromCache, 1);
  service.update(stateOf(2, { carolRevoked: true, bobExpiresMs: undefined, aliceTags: ['read'], subjectExpiresMs: undefined, mapEmail: false }));
  const revoked = await service.answer(request);
  assert.notDeepEqual(Buffer.from(revoked), first);
  assert.equal(service.metrics.snapshot().answersFromCache, 1);
  assert.equal(service.metrics.snapshot().checks['deny/api_key_unknown'], 1);
  await service.close();
});

test('a request carrying any header besides the credential is never answered from the cache', () => {
  const context = { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'api_key' };
  assert.ok(answerKey({ headers: { 'x-api-key': 'k' }, path: '/' }, context));
  assert.equal(answerKey({ headers: { 'x-api-key': 'k', 'x-sluice-consumer': 'm' }, path: '/' }, context), undefined);
  // Different credentials, routes or (for query-key routes) paths never share a key; keys hold no credential.
  const a = answerKey({ headers: { 'x-api-key': 'k1' }, path: '/' }, context)!;
  assert.notEqual(a, answerKey({ headers: { authorization: 'k1' }, path: '/' }, context));
  assert.notEqual(a, answerKey({ headers: { 'x-api-key': 'k1' }, path: '/' }, { ...context, [AUTHZ_CONTEXT.scopes]: 'w' }));
  assert.equal(a, answerKey({ headers: { 'x-api-key': 'k1' }, path: '/other' }, context), 'the path is not part of a header-key answer');
  const query = { ...context, [AUTHZ_CONTEXT.apiKeyQuery]: 'api_key' };
  assert.notEqual(answerKey({ headers: {}, path: '/?api_key=a' }, query), answerKey({ headers: {}, path: '/?api_key=b' }, query));
  assert.ok(!a.includes('k1'));
});

test('the cache holds at most its bound, dropping the oldest', () => {
  const cache = new AnswerCache(3);
  const answer = { bytes: new Uint8Array(1), reason: 'api_key', decidedAtMs: T0, validity: { untilMs: Infinity } };
  for (const key of ['a', 'b', 'c', 'd']) cache.add(key, answer);
  assert.equal(cache.size, 3);
  assert.equal(cache.get('a', T0), undefined);
  assert.ok(cache.get('d', T0));
});
