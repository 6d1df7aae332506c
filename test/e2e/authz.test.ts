// The authz service end to end: a real Envoy asks it on every authenticated
// route, a real upstream echoes what reached it, and local JWKS servers (which
// the test controls) serve the signing keys. Every case checks the status, the
// challenge, the headers the upstream saw and that the credential never got there.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { exportSPKI, importJWK, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import type { StateInput } from '../helpers/gateway.ts';
import { parseTestState, startGateway, type Gateway } from '../helpers/gateway.ts';
import { makeSigningKey, rawToken, startJwksServer, type JwksServer, type SigningKey } from '../helpers/jwks-server.ts';
import { sleep } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type EchoBody, type HttpUpstream } from '../helpers/upstream.ts';
import { generateApiKey, type NewApiKey } from '../../control-plane/src/store/api-keys.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import type { ApiKeyRecord } from '../../control-plane/src/authz/api-keys.ts';

const SECRET = 'e2e-authz-secret-0123456789abcdefghijklmnop';
const MAIN_ISS = 'https://issuer.test/main';
const PARTNER_ISS = 'https://issuer.test/partner';
const AUDIENCE = 'sluice-api';
/** The service's unknown-kid refetch cooldown (its default). */
const COOLDOWN_MS = 30_000;

let gw: Gateway;
let upstream: HttpUpstream;
let authz: AuthzService;
let authzPort: number;
const jwks: Record<'main' | 'rotating' | 'flood' | 'flaky', JwksServer> = {} as never;
const keys: Record<string, SigningKey> = {};
const apiKeys: Record<string, NewApiKey> = {};
/** Every token and key the test sends: none may appear in any captured log. */
const secrets = new Set<string>();
const authzLog: string[] = [];
let envoyPort: number;
let revision = 1;

const now = () => Math.floor(Date.now() / 1000);

type RouteInput = NonNullable<StateInput['routes']>[number];
type CredentialInput = NonNullable<StateInput['credentials']>[number];
type InlineJwk = { kty: string; [field: string]: string | number | boolean | string[] };

/** A public JWK as the model's inline-JWKS input type (jose's JWK type is wider than JSON needs). */
function inlineJwk(key: SigningKey): InlineJwk {
  return key.jwk as InlineJwk;
}

function baseState(rev: number, opts: { dropRevokedRecord?: boolean; deleteCredential?: string } = {}): StateInput {
  const route = (name: string, prefix: string, auth: RouteInput['auth']): RouteInput => ({
    name,
    match: { path: { prefix } },
    action: { upstream: 'echo' },
    auth,
  });
  const all: CredentialInput[] = [
    { name: 'alice-key', consumer: 'alice', kind: 'api_key' },
    { name: 'bob-key', consumer: 'bob', kind: 'api_key' },
    { name: 'old-key', consumer: 'bob', kind: 'api_key', expires_at: '2020-01-01T00:00:00Z' },
    { name: 'revoked-key', consumer: 'bob', kind: 'api_key' },
    { name: 'deleted-key', consumer: 'bob', kind: 'api_key' },
    { name: 'carol-sub', consumer: 'carol', kind: 'jwt_subject', jwt: { provider: 'main', subject: 'carol' } },
    { name: 'erin-sub', consumer: 'erin', kind: 'jwt_subject', jwt: { provider: 'main', subject: 'erin' }, expires_at: '2020-01-01T00:00:00Z' },
  ];
  const credentials = all.filter((c) => c.name !== opts.deleteCredential);
  return {
    revision: rev,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    routes: [
      route('open', '/open', { mode: 'none' }),
      route('jwt', '/jwt/', { mode: 'jwt', jwt_providers: ['main'] }),
      route('jwt-scoped', '/jwt-scoped/', { mode: 'jwt', jwt_providers: ['main'], scopes: ['orders:read'] }),
      route('jwt-any', '/jwt-any/', { mode: 'jwt' }),
      route('key', '/key/', { mode: 'api_key' }),
      route('key-scoped', '/key-scoped/', { mode: 'api_key', scopes: ['premium'] }),
      route('any', '/any/', { mode: 'any', jwt_providers: ['main'] }),
    ],
    consumers: [{ name: 'alice', tags: ['premium'] }, { name: 'bob' }, { name: 'carol' }, { name: 'erin' }],
    credentials,
    jwt_providers: [
      {
        name: 'main',
        issuer: MAIN_ISS,
        jwks_uri: jwks.main.url,
        audiences: [AUDIENCE],
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        claims_to_headers: [
          { claim: 'email', header: 'x-user-email' },
          { claim: 'org.id', header: 'x-org-id' },
        ],
      },
      { name: 'partner', issuer: PARTNER_ISS, jwks: { keys: [inlineJwk(keys.partnerEc!), inlineJwk(keys.partnerRsa!)] }, algorithms: ['ES256'] },
      { name: 'rotating', issuer: 'https://issuer.test/rotating', jwks_uri: jwks.rotating.url },
      { name: 'flood', issuer: 'https://issuer.test/flood', jwks_uri: jwks.flood.url },
      { name: 'flaky', issuer: 'https://issuer.test/flaky', jwks_uri: jwks.flaky.url },
    ],
  };
}

function records(opts: { dropRevokedRecord?: boolean } = {}): ApiKeyRecord[] {
  return Object.entries(apiKeys)
    .filter(([credential]) => !(opts.dropRevokedRecord && credential === 'revoked-key'))
    .map(([credential, key]) => ({ credential, keyHash: key.hash }));
}

/** Applies a State to the Envoy and hands the same revision to the authz service. */
async function applyEverywhere(opts: { dropRevokedRecord?: boolean; deleteCredential?: string } = {}): Promise<void> {
  revision += 1;
  const input = baseState(revision, opts);
  const state = parseTestState(input);
  authz.update({ state, apiKeys: records(opts) });
  await gw.apply(input);
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

before(async () => {
  for (const [name, alg] of [['rsa', 'RS256'], ['ec', 'ES256'], ['ed', 'EdDSA'], ['partnerEc', 'ES256'], ['partnerRsa', 'RS256'], ['rot1', 'RS256'], ['rot2', 'RS256'], ['flood', 'RS256'], ['flaky', 'RS256']] as const) {
    keys[name] = await makeSigningKey(alg, `${name}-kid`);
  }
  jwks.main = await startJwksServer([keys.rsa!.jwk, keys.ec!.jwk, keys.ed!.jwk], 'max-age=300');
  jwks.rotating = await startJwksServer([keys.rot1!.jwk], 'max-age=300');
  jwks.flood = await startJwksServer([keys.flood!.jwk], 'max-age=300');
  // A one-second lifetime: its keys go stale (and get refreshed) all the time.
  jwks.flaky = await startJwksServer([keys.flaky!.jwk], 'max-age=1');
  for (const name of ['alice-key', 'bob-key', 'old-key', 'revoked-key', 'deleted-key']) {
    apiKeys[name] = generateApiKey(SECRET);
    secrets.add(apiKeys[name].key);
  }
  upstream = await startHttpUpstream({ name: 'echo' });
  authz = new AuthzService({
    secret: SECRET,
    jwks: { minTtlMs: 1_000, refetchCooldownMs: COOLDOWN_MS },
    log: {
      info: (msg, fields) => authzLog.push(JSON.stringify({ msg, fields })),
      warn: (msg, fields) => authzLog.push(JSON.stringify({ msg, fields })),
      error: (msg, fields) => authzLog.push(JSON.stringify({ msg, fields })),
    },
  });
  authzPort = await authz.listen('127.0.0.1', 0);
  gw = await startGateway({
    envoys: [{ nodeId: 'authz-1' }],
    translateOptions: { authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: authzPort } },
  });
  envoyPort = gw.envoys[0]!.port;
  const input = baseState(revision);
  authz.update({ state: parseTestState(input), apiKeys: records() });
  await gw.apply(input);
  // The remote key sets are fetched in the background on the first State.
  await waitFor('first JWKS fetches', () => Object.values(jwks).every((server) => server.fetches >= 1));
});

after(async () => {
  await gw?.stop();
  await authz?.close();
  await upstream?.close();
  await Promise.all(Object.values(jwks).map((server) => server?.close()));
});

// ---- tokens ------------------------------------------------------------------

function claims(extra: JWTPayload = {}): JWTPayload {
  return { iss: MAIN_ISS, aud: AUDIENCE, sub: 'carol', iat: now(), exp: now() + 600, ...extra };
}

async function token(key: SigningKey, extra: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const jwt = await key.sign(claims(extra), header);
  secrets.add(jwt);
  return jwt;
}

function remember(value: string): string {
  secrets.add(value);
  return value;
}

/** Flips one character in the middle of a part (0 header, 1 payload, 2 signature). */
function tamper(jwt: string, part: number): string {
  const parts = jwt.split('.');
  const text = parts[part]!;
  const at = Math.floor(text.length / 2);
  parts[part] = text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1);
  return remember(parts.join('.'));
}

/** Re-encodes the payload with changes, keeping the original signature. */
function withPayload(jwt: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = jwt.split('.');
  const decoded = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
  const forged = Buffer.from(JSON.stringify({ ...decoded, ...change })).toString('base64url');
  return remember(`${header}.${forged}.${signature}`);
}

// ---- the table -----------------------------------------------------------------

interface Case {
  name: string;
  path: string;
  headers?: () => Promise<Record<string, string>> | Record<string, string>;
  status: number;
  /** Exact WWW-Authenticate expected on a refusal. */
  challenge?: string;
  /** Headers the upstream must have seen with these values (undefined: absent). */
  upstream?: Record<string, string | undefined>;
}

const bearer = (value: string) => ({ authorization: `Bearer ${value}` });
const invalidToken = (description: string) => `Bearer realm="sluice", error="invalid_token", error_description="${description}"`;
const NO_CREDENTIAL = 'Bearer realm="sluice"';

/** Identity headers that must be absent on any request that carried none of them legitimately. */
const NO_IDENTITY = { 'x-sluice-consumer': undefined, 'x-sluice-credential': undefined, 'x-sluice-auth-mode': undefined, 'x-user-email': undefined, 'x-org-id': undefined };

const cases: Case[] = [
  {
    name: 'auth none: passes without credentials, spoofed identity headers stripped',
    path: '/open/x',
    headers: () => ({ 'x-sluice-consumer': 'mallory', 'x-sluice-anything': 'x', 'x-user-email': 'spoof@example.com', 'x-user-id': '1' }),
    status: 200,
    upstream: { ...NO_IDENTITY, 'x-sluice-anything': undefined, 'x-user-id': undefined },
  },
  {
    name: 'RS256 token mapped to a consumer: identity, issuer, subject, scopes and claim headers set',
    path: '/jwt/a',
    headers: async () => bearer(await token(keys.rsa!, { email: 'carol@example.com', org: { id: 'org-7' }, scope: 'orders:read profile' })),
    status: 200,
    upstream: {
      'x-sluice-consumer': 'carol',
      'x-sluice-credential': 'carol-sub',
      'x-sluice-auth-mode': 'jwt',
      'x-sluice-jwt-issuer': MAIN_ISS,
      'x-sluice-jwt-subject': 'carol',
      'x-sluice-scopes': 'orders:read profile',
      'x-user-email': 'carol@example.com',
      'x-org-id': 'org-7',
    },
  },
  {
    name: 'ES256 token, subject with no credential: authenticated without a consumer',
    path: '/jwt/b',
    headers: async () => bearer(await token(keys.ec!, { sub: 'dave' })),
    status: 200,
    upstream: { 'x-sluice-auth-mode': 'jwt', 'x-sluice-jwt-subject': 'dave', 'x-sluice-consumer': undefined, 'x-sluice-credential': undefined },
  },
  {
    name: 'EdDSA token',
    path: '/jwt/c',
    headers: async () => bearer(await token(keys.ed!)),
    status: 200,
    upstream: { 'x-sluice-consumer': 'carol', 'x-sluice-auth-mode': 'jwt' },
  },
  {
    name: 'expired token',
    path: '/jwt/d',
    headers: async () => bearer(await token(keys.rsa!, { iat: now() - 7200, exp: now() - 3600 })),
    status: 401,
    challenge: invalidToken('the token has expired'),
  },
  {
    name: 'token not valid yet (nbf an hour ahead)',
    path: '/jwt/e',
    headers: async () => bearer(await token(keys.rsa!, { nbf: now() + 3600, exp: now() + 7200 })),
    status: 401,
    challenge: invalidToken('the token is not valid yet'),
  },
  {
    name: 'iat far in the future',
    path: '/jwt/f',
    headers: async () => bearer(await token(keys.rsa!, { iat: now() + 3600, exp: now() + 7200 })),
    status: 401,
    challenge: invalidToken('the token was issued in the future'),
  },
  {
    name: 'wrong issuer',
    path: '/jwt/g',
    headers: async () => bearer(await token(keys.rsa!, { iss: 'https://evil.test/' })),
    status: 401,
    challenge: invalidToken('the token issuer is not trusted'),
  },
  {
    name: 'wrong audience',
    path: '/jwt/h',
    headers: async () => bearer(await token(keys.rsa!, { aud: 'someone-else' })),
    status: 401,
    challenge: invalidToken('the token audience is not accepted'),
  },
  {
    name: 'alg none',
    path: '/jwt/i',
    headers: () => bearer(remember(rawToken({ alg: 'none', typ: 'JWT' }, claims()))),
    status: 401,
    challenge: invalidToken('the token algorithm is not allowed'),
  },
  {
    name: 'HS256 signed with the RSA public key as the secret',
    path: '/jwt/j',
    headers: async () => {
      const pem = await exportSPKI((await importJWK(keys.rsa!.jwk, 'RS256')) as CryptoKey);
      const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: keys.rsa!.kid }).sign(new TextEncoder().encode(pem));
      return bearer(remember(forged));
    },
    status: 401,
    challenge: invalidToken('the token algorithm is not allowed'),
  },
  {
    name: 'algorithm outside the provider allowlist (RS256 for an ES256-only provider, key in its JWKS)',
    path: '/jwt-any/k',
    headers: async () => bearer(await token(keys.partnerRsa!, { iss: PARTNER_ISS })),
    status: 401,
    challenge: invalidToken('the token algorithm is not allowed'),
  },
  {
    name: 'tampered payload (sub changed, signature kept)',
    path: '/jwt/l',
    headers: async () => bearer(withPayload(await token(keys.rsa!, { sub: 'dave' }), { sub: 'carol' })),
    status: 401,
    challenge: invalidToken('the token signature is not valid'),
  },
  {
    name: 'tampered signature',
    path: '/jwt/m',
    headers: async () => bearer(tamper(await token(keys.ec!), 2)),
    status: 401,
    challenge: invalidToken('the token signature is not valid'),
  },
  {
    name: 'missing required scope: 403 insufficient_scope naming it',
    path: '/jwt-scoped/n',
    headers: async () => bearer(await token(keys.rsa!, { scope: 'profile' })),
    status: 403,
    challenge: 'Bearer realm="sluice", error="insufficient_scope", error_description="the credential lacks a required scope", scope="orders:read"',
  },
  {
    name: 'required scope in `scope`',
    path: '/jwt-scoped/o',
    headers: async () => bearer(await token(keys.rsa!, { scope: 'profile orders:read' })),
    status: 200,
    upstream: { 'x-sluice-scopes': 'orders:read profile' },
  },
  {
    name: 'required scope in an `scp` array',
    path: '/jwt-scoped/p',
    headers: async () => bearer(await token(keys.ed!, { scp: ['orders:read', 'orders:write'] })),
    status: 200,
    upstream: { 'x-sluice-scopes': 'orders:read orders:write', 'x-sluice-consumer': 'carol' },
  },
  {
    name: 'token from a provider the route does not allow',
    path: '/jwt/q',
    headers: async () => bearer(await token(keys.partnerEc!, { iss: PARTNER_ISS })),
    status: 401,
    challenge: invalidToken('the token issuer is not accepted on this route'),
  },
  {
    name: 'the same provider where the route allows any (inline JWKS)',
    path: '/jwt-any/r',
    headers: async () => bearer(await token(keys.partnerEc!, { iss: PARTNER_ISS, aud: undefined })),
    status: 200,
    upstream: { 'x-sluice-jwt-issuer': PARTNER_ISS, 'x-sluice-auth-mode': 'jwt' },
  },
  {
    name: 'token signed by a key of another issuer (kid unknown to this provider)',
    path: '/jwt/s',
    headers: async () => bearer(await token(keys.partnerEc!)),
    status: 401,
    challenge: invalidToken('no signing key matches the token'),
  },
  { name: 'JWT route, no credential', path: '/jwt/t', status: 401, challenge: NO_CREDENTIAL },
  { name: 'JWT route, Basic credentials only', path: '/jwt/u', headers: () => ({ authorization: 'Basic dXNlcjpwYXNz' }), status: 401, challenge: NO_CREDENTIAL },
  { name: 'malformed bearer token', path: '/jwt/v', headers: () => bearer(remember('not-a-jwt')), status: 401, challenge: invalidToken('the token is malformed') },
  {
    name: 'jwt_subject credential expired',
    path: '/jwt/w',
    headers: async () => bearer(await token(keys.rsa!, { sub: 'erin' })),
    status: 401,
    challenge: invalidToken('the credential has expired'),
  },
  {
    name: 'API key in x-api-key',
    path: '/key/a',
    headers: () => ({ 'x-api-key': apiKeys['alice-key']!.key }),
    status: 200,
    upstream: { 'x-sluice-consumer': 'alice', 'x-sluice-credential': 'alice-key', 'x-sluice-auth-mode': 'api_key', 'x-sluice-scopes': 'premium' },
  },
  {
    name: 'API key as a Bearer token',
    path: '/key/b',
    headers: () => bearer(apiKeys['bob-key']!.key),
    status: 200,
    upstream: { 'x-sluice-consumer': 'bob', 'x-sluice-credential': 'bob-key', 'x-sluice-scopes': undefined },
  },
  { name: 'expired API key', path: '/key/c', headers: () => ({ 'x-api-key': apiKeys['old-key']!.key }), status: 401, challenge: invalidToken('the API key has expired') },
  {
    name: 'unknown API key',
    path: '/key/d',
    headers: () => ({ 'x-api-key': remember(generateApiKey(SECRET).key) }),
    status: 401,
    challenge: invalidToken('the API key is not valid'),
  },
  {
    name: 'API key hashed under another secret',
    path: '/key/e',
    headers: () => ({ 'x-api-key': remember(generateApiKey('another-secret-another-secret-0000').key) }),
    status: 401,
    challenge: invalidToken('the API key is not valid'),
  },
  { name: 'malformed API key', path: '/key/f', headers: () => ({ 'x-api-key': remember('sk_nope') }), status: 401, challenge: invalidToken('the API key is malformed') },
  { name: 'API-key route, no credential', path: '/key/g', status: 401, challenge: NO_CREDENTIAL },
  {
    name: 'API-key route given a JWT',
    path: '/key/h',
    headers: async () => bearer(await token(keys.rsa!)),
    status: 401,
    challenge: invalidToken('this route takes an API key'),
  },
  {
    name: 'JWT route given an API key',
    path: '/jwt/x',
    headers: () => ({ 'x-api-key': apiKeys['alice-key']!.key }),
    status: 401,
    challenge: invalidToken('this route takes a JWT'),
  },
  {
    name: 'API key whose consumer has the required scope (tag)',
    path: '/key-scoped/i',
    headers: () => ({ 'x-api-key': apiKeys['alice-key']!.key }),
    status: 200,
    upstream: { 'x-sluice-consumer': 'alice' },
  },
  {
    name: 'API key whose consumer lacks the required scope',
    path: '/key-scoped/j',
    headers: () => ({ 'x-api-key': apiKeys['bob-key']!.key }),
    status: 403,
    challenge: 'Bearer realm="sluice", error="insufficient_scope", error_description="the credential lacks a required scope", scope="premium"',
  },
  {
    name: 'auth any accepts an API key',
    path: '/any/a',
    headers: () => ({ 'x-api-key': apiKeys['bob-key']!.key }),
    status: 200,
    upstream: { 'x-sluice-auth-mode': 'api_key', 'x-sluice-consumer': 'bob' },
  },
  {
    name: 'auth any accepts a JWT',
    path: '/any/b',
    headers: async () => bearer(await token(keys.ec!)),
    status: 200,
    upstream: { 'x-sluice-auth-mode': 'jwt', 'x-sluice-consumer': 'carol' },
  },
  { name: 'auth any, no credential', path: '/any/c', status: 401, challenge: NO_CREDENTIAL },
  {
    name: 'two credentials at once: 400 invalid_request',
    path: '/any/d',
    headers: async () => ({ 'x-api-key': apiKeys['bob-key']!.key, ...bearer(await token(keys.ec!)) }),
    status: 400,
    challenge: 'Bearer realm="sluice", error="invalid_request", error_description="send exactly one credential"',
  },
  {
    name: 'spoofed identity and claim headers with an API key: overwritten or removed',
    path: '/key/k',
    headers: () => ({
      'x-api-key': apiKeys['alice-key']!.key,
      'x-sluice-consumer': 'mallory',
      'x-sluice-credential': 'mallory-key',
      'x-sluice-anything': 'x',
      'x-user-email': 'spoof@example.com',
      'x-org-id': 'evil',
      'x-user-id': '0',
      'x-consumer-id': 'mallory',
    }),
    status: 200,
    upstream: {
      'x-sluice-consumer': 'alice',
      'x-sluice-credential': 'alice-key',
      'x-sluice-anything': undefined,
      'x-user-email': undefined,
      'x-org-id': undefined,
      'x-user-id': undefined,
      'x-consumer-id': undefined,
    },
  },
  {
    name: 'spoofed claim header with a JWT: the token claim wins',
    path: '/jwt/y',
    headers: async () => ({ ...bearer(await token(keys.rsa!, { email: 'carol@example.com' })), 'x-user-email': 'spoof@example.com', 'x-org-id': 'evil', 'x-sluice-jwt-subject': 'root' }),
    status: 200,
    upstream: { 'x-user-email': 'carol@example.com', 'x-org-id': undefined, 'x-sluice-jwt-subject': 'carol' },
  },
];

interface Sent {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  echo?: EchoBody;
}

async function send(path: string, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetchVia(envoyPort, path, { headers });
  const echo = res.status === 200 && res.headers['x-upstream'] === 'echo' ? (JSON.parse(res.body) as EchoBody) : undefined;
  return { status: res.status, headers: res.headers, body: res.body, echo };
}

/** The checks every case makes, whatever its outcome. */
function assertCase(c: Case, sent: Sent, headers: Record<string, string>, upstreamBefore: number): void {
  const where = `${c.name}: ${sent.status} ${sent.body.slice(0, 300)}`;
  assert.equal(sent.status, c.status, where);
  const credentialValues = [headers.authorization, headers['x-api-key']].filter((v): v is string => v !== undefined);
  for (const value of credentialValues) {
    const bare = value.replace(/^Bearer /, '');
    assert.ok(!sent.body.includes(bare), `${c.name}: the response echoes the credential`);
    assert.ok(!JSON.stringify(sent.headers).includes(bare), `${c.name}: a response header echoes the credential`);
  }
  if (c.status === 200) {
    assert.equal(sent.headers['www-authenticate'], undefined, where);
    assert.ok(sent.echo, `${c.name}: no echo from the upstream`);
    const seen = sent.echo.headers;
    if (c.path.startsWith('/open')) {
      assert.equal(seen.authorization, headers.authorization, where);
    } else {
      assert.equal(seen.authorization, headers.authorization?.startsWith('Basic') ? headers.authorization : undefined, `${c.name}: Authorization reached the upstream`);
      assert.equal(seen['x-api-key'], undefined, `${c.name}: x-api-key reached the upstream`);
    }
    assert.equal(sent.echo.path, c.path, where);
    for (const [name, value] of Object.entries(c.upstream ?? {})) assert.equal(seen[name], value, `${c.name}: upstream saw ${name}=${String(seen[name])}`);
  } else {
    assert.equal(upstream.requests, upstreamBefore, `${c.name}: a refused request reached the upstream`);
    if (c.status === 401 || c.status === 403 || c.status === 400) {
      assert.equal(sent.headers['www-authenticate'], c.challenge, where);
      assert.match(String(sent.headers['content-type']), /^application\/json/, where);
      const body = JSON.parse(sent.body) as { error?: unknown; message?: unknown };
      assert.equal(typeof body.error, 'string', where);
      assert.equal(typeof body.message, 'string', where);
    }
  }
}

test(`acceptance table (${cases.length} cases) through Envoy to an echoing upstream`, async (t) => {
  assert.ok(cases.length >= 30);
  for (const c of cases) {
    await t.test(c.name, async () => {
      const headers = (await c.headers?.()) ?? {};
      const before = upstream.requests;
      assertCase(c, await send(c.path, headers), headers, before);
    });
  }
});

test('a revoked key (its record gone) and a deleted credential fail from the revision that removed them', async () => {
  const revoked = { 'x-api-key': apiKeys['revoked-key']!.key };
  const deleted = { 'x-api-key': apiKeys['deleted-key']!.key };
  assert.equal((await send('/key/r', revoked)).status, 200);
  assert.equal((await send('/key/r', deleted)).status, 200);
  await applyEverywhere({ dropRevokedRecord: true, deleteCredential: 'deleted-key' });
  assert.equal(authz.revision, revision);
  for (const headers of [revoked, deleted]) {
    const sent = await send('/key/r', headers);
    assert.equal(sent.status, 401);
    assert.equal(sent.headers['www-authenticate'], invalidToken('the API key is not valid'));
  }
  assert.equal((await send('/key/r', { 'x-api-key': apiKeys['alice-key']!.key })).status, 200, 'other keys unaffected');
});

test('key rotation at the JWKS server: a token with the new kid succeeds after exactly one refetch', async () => {
  const fetchesBefore = jwks.rotating.fetches;
  jwks.rotating.setKeys([keys.rot1!.jwk, keys.rot2!.jwk]);
  const jwt = await token(keys.rot2!, { iss: 'https://issuer.test/rotating', aud: undefined });
  const sent = await send('/jwt-any/rot', bearer(jwt));
  assert.equal(sent.status, 200, sent.body);
  assert.equal(jwks.rotating.fetches, fetchesBefore + 1);
  // The old key still verifies, from the cache.
  assert.equal((await send('/jwt-any/rot', bearer(await token(keys.rot1!, { iss: 'https://issuer.test/rotating', aud: undefined })))).status, 200);
  assert.equal(jwks.rotating.fetches, fetchesBefore + 1);
});

test('a thousand tokens with random unknown kids cause a bounded number of JWKS fetches', async () => {
  const iss = 'https://issuer.test/flood';
  const fetchesBefore = jwks.flood.fetches;
  const started = Date.now();
  const total = 1_000;
  const statuses = new Map<number, number>();
  let next = 0;
  // 16 clients in parallel, one request each at a time.
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < total) {
        next += 1;
        const jwt = await token(keys.flood!, { iss, aud: undefined }, { kid: randomBytes(12).toString('hex') });
        const { status } = await send('/jwt-any/flood', bearer(jwt));
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  const elapsed = Date.now() - started;
  assert.deepEqual([...statuses.entries()], [[401, total]]);
  // One refetch per cooldown window at most (the first window may start with one).
  const bound = 1 + Math.floor(elapsed / COOLDOWN_MS) + 1;
  const fetched = jwks.flood.fetches - fetchesBefore;
  assert.ok(fetched <= bound, `${fetched} JWKS fetches for ${total} random kids in ${elapsed} ms (bound ${bound})`);
  // The real key still works, from the cache.
  assert.equal((await send('/jwt-any/flood', bearer(await token(keys.flood!, { iss, aud: undefined })))).status, 200);
});

test('the JWKS endpoint going down does not fail requests with cached keys', async () => {
  const iss = 'https://issuer.test/flaky';
  const errorsBefore = authz.metrics.snapshot().jwksFetches['flaky/error'] ?? 0;
  jwks.flaky.setDown(true);
  try {
    // Its keys live one second, so a background refresh soon tries and fails.
    await waitFor('a failed JWKS refresh', () => (authz.metrics.snapshot().jwksFetches['flaky/error'] ?? 0) > errorsBefore);
    const sent = await send('/jwt-any/flaky', bearer(await token(keys.flaky!, { iss, aud: undefined })));
    assert.equal(sent.status, 200, sent.body);
    assert.ok(jwks.flaky.attempts > jwks.flaky.fetches, 'the server was asked while down');
  } finally {
    jwks.flaky.setDown(false);
  }
});

test('metrics count checks by result and reason, and JWKS fetches', () => {
  const metrics = authz.metrics.snapshot();
  assert.ok((metrics.checks['allow/jwt'] ?? 0) > 0);
  assert.ok((metrics.checks['allow/api_key'] ?? 0) > 0);
  assert.ok((metrics.checks['deny/token_expired'] ?? 0) >= 1);
  assert.ok((metrics.checks['deny/unknown_kid'] ?? 0) >= 1_000);
  assert.ok((metrics.jwksFetches['main/ok'] ?? 0) >= 1);
  assert.equal(metrics.latency.count, Object.values(metrics.checks).reduce((a, b) => a + b, 0));
});

test('no token or key appears in any captured log', () => {
  const logs = [authzLog.join('\n'), ...gw.envoys.map((e) => readFileSync(e.handle.logFile, 'utf8'))].join('\n');
  assert.ok(secrets.size > 1_000);
  for (const value of secrets) assert.ok(!logs.includes(value), 'a credential appears in a log');
});

test('with the authz service stopped: auth routes answer 503 without hanging, auth none routes are unaffected', async () => {
  await authz.close();
  const jwt = await token(keys.rsa!);
  const denied = await send('/jwt/down', bearer(jwt));
  assert.equal(denied.status, 503);
  assert.equal((await send('/open/down')).status, 200);
});
