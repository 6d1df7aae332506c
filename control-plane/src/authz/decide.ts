// The decision for one request: which credential it carries, whether the route
// accepts it, who it identifies, and which headers go upstream.
import { AUTHZ_CONTEXT, AUTHZ_SET_HEADERS, CREDENTIAL_HEADERS, IDENTITY_HEADERS, authzReadsHeader, claimHeaders, isIdentityHeader } from '../model/contract.ts';
import type { Credential, JwtProvider } from '../model/index.ts';
import { hashPresentedKey, isWellFormedApiKey, looksLikeApiKey, sameHash } from './api-keys.ts';
import { insufficientScope, invalidRequest, invalidToken, misconfigured, missingCredential, type AuthFailure } from './failure.ts';
import type { KeySource, KeySources } from './jwks.ts';
import { claimAt, tokenScopes, verifyJwt } from './jwt.ts';
import { type AuthzIndex, isExpired, subjectKey } from './lookup.ts';

const API_KEY_HEADER = CREDENTIAL_HEADERS.apiKey;
const AUTHORIZATION_HEADER = CREDENTIAL_HEADERS.authorization;

/** The request headers decide() reads (model/contract.ts AUTHZ_READ_HEADERS: Envoy sends only these). */
export const readsHeader = authzReadsHeader;

/** Headers the gateway sets on an authenticated request (named once, in model/contract.ts). */
export const SET_HEADERS = AUTHZ_SET_HEADERS;

export interface Identity {
  mode: 'jwt' | 'api_key';
  consumer?: string;
  credential?: string;
  scopes: string[];
}

/**
 * How long an allow stands for the same request and the same index: until
 * `untilMs` (the credential's or the token's expiry, skew included), and, for a
 * JWT, only while the key set it was verified against is unchanged.
 */
export interface Validity {
  untilMs: number;
  keys?: { source: KeySource; generation: number };
}

export type Decision =
  | {
      allow: true;
      identity: Identity;
      setHeaders: Array<[string, string]>;
      removeHeaders: string[];
      /** Query parameters removed before the upstream (the API key's, when it came that way). */
      removeQuery: string[];
      reason: string;
      validity: Validity;
    }
  | { allow: false; failure: AuthFailure };

/** What the service reads of a request: lower-cased headers (Envoy lower-cases them) and the path with its query. */
export interface CheckedRequest {
  headers: Readonly<Record<string, string>>;
  /** The request target after Envoy's normalisation, query included, not decoded. */
  path: string;
}

export interface CheckContext {
  index: AuthzIndex;
  sources: KeySources;
  /** SLUICE_SECRET; without it no API key can match. */
  secret: string | undefined;
  nowMs: number;
}

/** Where a credential came from: a header, or (API keys on routes that allow it) a query parameter. */
type Source = { header: string } | { query: string };

type Presented = { kind: 'jwt'; token: string; header: string } | { kind: 'api_key'; key: string; from: Source };

const AUTH_MODES = new Set(['jwt', 'api_key', 'any']);

/** The request and the route's context_extensions. */
export async function decide(request: CheckedRequest, context: Readonly<Record<string, string>>, ctx: CheckContext): Promise<Decision> {
  const { headers } = request;
  const mode = context[AUTHZ_CONTEXT.authMode];
  if (!mode || !AUTH_MODES.has(mode)) return deny(misconfigured('the route has no auth settings'));
  const queryName = context[AUTHZ_CONTEXT.apiKeyQuery];
  if (queryName !== undefined && (mode === 'jwt' || !isQueryName(queryName))) return deny(misconfigured('the route\'s API-key query parameter is not usable'));
  const presented = credentialOf(request, queryName);
  if ('failure' in presented) return deny(presented.failure);
  if (!presented.credential) return deny(missingCredential());
  const credential = presented.credential;
  if (mode === 'jwt' && credential.kind !== 'jwt') return deny(invalidToken('this route takes a JWT', 'wrong_credential_kind'));
  if (mode === 'api_key' && credential.kind !== 'api_key') return deny(invalidToken('this route takes an API key', 'wrong_credential_kind'));
  const required = splitList(context[AUTHZ_CONTEXT.scopes]);
  const decision =
    credential.kind === 'api_key'
      ? checkApiKey(credential.key, credential.from, required, ctx)
      : await checkJwt(credential.token, credential.header, required, splitList(context[AUTHZ_CONTEXT.jwtProviders]), ctx);
  return decision.allow ? withClientIdentityRemoved(decision, headers) : decision;
}

/** Any other x-sluice-* (or identity) header the client sent goes too, whatever its name. */
function withClientIdentityRemoved(decision: Extract<Decision, { allow: true }>, headers: Readonly<Record<string, string>>): Decision {
  const set = new Set(decision.setHeaders.map(([name]) => name));
  const remove = new Set(decision.removeHeaders);
  for (const name of Object.keys(headers)) if (isIdentityHeader(name) && !set.has(name)) remove.add(name);
  return { ...decision, removeHeaders: [...remove].sort() };
}

function deny(failure: AuthFailure): Decision {
  return { allow: false, failure };
}

function splitList(value: string | undefined): string[] {
  return value ? value.split(' ').filter((s) => s.length > 0) : [];
}

/** The one credential a request carries; two at once is ambiguous and refused. */
function credentialOf(request: CheckedRequest, queryName: string | undefined): { credential?: Presented } | { failure: AuthFailure } {
  const { headers } = request;
  const found: Presented[] = [];
  const apiKey = headers[API_KEY_HEADER];
  if (apiKey !== undefined) found.push({ kind: 'api_key', key: apiKey.trim(), from: { header: API_KEY_HEADER } });
  if (queryName !== undefined) {
    const inQuery = queryCredential(request.path, queryName);
    if ('failure' in inQuery) return inQuery;
    if (inQuery.key !== undefined) found.push({ kind: 'api_key', key: inQuery.key, from: { query: queryName } });
  }
  const authorization = headers[AUTHORIZATION_HEADER];
  const bearer = authorization === undefined ? undefined : /^Bearer +(\S+) *$/i.exec(authorization);
  if (authorization !== undefined && /^Bearer(?: |$)/i.test(authorization) && !bearer) {
    return { failure: invalidRequest('the Authorization header is malformed', 'authorization_malformed') };
  }
  if (bearer?.[1] !== undefined) {
    const value = bearer[1];
    found.push(looksLikeApiKey(value) ? { kind: 'api_key', key: value, from: { header: AUTHORIZATION_HEADER } } : { kind: 'jwt', token: value, header: AUTHORIZATION_HEADER });
  }
  if (found.length > 1) return { failure: invalidRequest('send exactly one credential', 'multiple_credentials') };
  return found[0] ? { credential: found[0] } : {};
}

/** Unreserved URI characters only (the model's rule for auth.api_key_query). */
function isQueryName(name: string): boolean {
  return /^[A-Za-z0-9._~-]{1,64}$/.test(name);
}

/**
 * The API key in the route's query parameter, read the way Envoy reads the query
 * when it removes parameters (split on & and the first =, names compared without
 * decoding), so the parameter used is exactly the one Envoy strips. A name that
 * only decodes or case-folds to it (api%5Fkey, API_KEY) is refused rather than
 * passed on to an upstream that might read it leniently, and so is a repeat.
 */
function queryCredential(path: string, name: string): { key?: string } | { failure: AuthFailure } {
  const start = path.indexOf('?');
  if (start < 0) return {};
  const values: string[] = [];
  for (const param of path.slice(start + 1).split('&')) {
    const equals = param.indexOf('=');
    const rawName = equals < 0 ? param : param.slice(0, equals);
    const value = equals < 0 ? '' : param.slice(equals + 1);
    if (rawName === name) values.push(value);
    else if (lenientName(rawName) === name.toLowerCase()) {
      return { failure: invalidRequest('the API-key query parameter is spelled ambiguously', 'api_key_query_ambiguous') };
    }
  }
  if (values.length > 1) return { failure: invalidRequest('send exactly one credential', 'multiple_credentials') };
  const raw = values[0];
  if (raw === undefined) return {};
  try {
    return { key: decodeURIComponent(raw) };
  } catch {
    return { failure: invalidToken('the API key is malformed', 'api_key_malformed') };
  }
}

/** A parameter name as a lenient reader might take it: percent-decoded, lower-cased. */
function lenientName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' ')).toLowerCase();
  } catch {
    return raw.toLowerCase();
  }
}

function checkApiKey(key: string, from: Source, required: readonly string[], ctx: CheckContext): Decision {
  if (!isWellFormedApiKey(key)) return deny(invalidToken('the API key is malformed', 'api_key_malformed'));
  if (ctx.secret === undefined) return deny(invalidToken('the API key is not valid', 'api_key_unknown'));
  const hash = hashPresentedKey(ctx.secret, key);
  // The map is keyed by an HMAC the client cannot steer without the secret; the
  // equality that decides is constant-time.
  const entry = ctx.index.apiKeys.get(hash);
  if (!entry || !sameHash(entry.keyHash, hash)) return deny(invalidToken('the API key is not valid', 'api_key_unknown'));
  if (isExpired(entry.credential, ctx.nowMs)) return deny(invalidToken('the API key has expired', 'api_key_expired'));
  const scopes = [...entry.consumer.tags].sort();
  const missing = required.filter((s) => !scopes.includes(s));
  if (missing.length > 0) return deny(insufficientScope(required));
  const identity: Identity = { mode: 'api_key', consumer: entry.consumer.name, credential: entry.credential.name, scopes };
  const stale = staleIdentityHeaders(identity, [], ctx.index);
  return {
    allow: true,
    identity,
    setHeaders: identityHeaders(identity),
    removeHeaders: 'header' in from ? [from.header, ...stale] : stale,
    removeQuery: 'query' in from ? [from.query] : [],
    reason: 'api_key',
    validity: { untilMs: expiryMs(entry.credential) },
  };
}

async function checkJwt(token: string, header: string, required: readonly string[], providerNames: readonly string[], ctx: CheckContext): Promise<Decision> {
  const all = [...ctx.index.providers.values()];
  const allowed = providerNames.length > 0 ? providerNames.flatMap((name) => ctx.index.providers.get(name) ?? []) : all;
  const verified = await verifyJwt(token, allowed, all, ctx.sources, ctx.nowMs);
  if (!verified.ok) return deny(verified.failure);
  const { provider, claims, source, generation } = verified;
  const subject = typeof claims.sub === 'string' ? claims.sub : undefined;
  const mapped = subject === undefined ? undefined : ctx.index.subjects.get(subjectKey(provider.name, subject));
  if (mapped && isExpired(mapped.credential, ctx.nowMs)) return deny(invalidToken('the credential has expired', 'credential_expired'));
  const scopes = tokenScopes(claims);
  if (required.some((s) => !scopes.includes(s))) return deny(insufficientScope(required));
  const identity: Identity = { mode: 'jwt', consumer: mapped?.consumer.name, credential: mapped?.credential.name, scopes };
  const claimed = claimValues(provider, claims);
  const setHeaders = [
    ...identityHeaders(identity),
    [SET_HEADERS.jwtIssuer, provider.issuer] as [string, string],
    ...(subject !== undefined && headerSafe(subject) ? [[SET_HEADERS.jwtSubject, subject] as [string, string]] : []),
    ...claimed,
  ];
  return {
    allow: true,
    identity,
    setHeaders,
    removeHeaders: [header, ...staleIdentityHeaders(identity, setHeaders.map(([name]) => name), ctx.index)],
    removeQuery: [],
    reason: 'jwt',
    validity: { untilMs: Math.min(tokenExpiryMs(claims.exp, provider.clock_skew_s), mapped ? expiryMs(mapped.credential) : Infinity), keys: { source, generation } },
  };
}

/** The first instant isExpired() holds for the credential (Infinity when it never expires). */
function expiryMs(credential: Credential): number {
  return credential.expires_at === undefined ? Infinity : Date.parse(credential.expires_at);
}

/**
 * The first instant the token counts as expired: the exp rule (jose's, and
 * verified-tokens.ts's) refuses once floor(now in s) >= exp + skew.
 */
function tokenExpiryMs(exp: number | undefined, skewS: number): number {
  return typeof exp === 'number' ? Math.ceil(exp + skewS) * 1000 : -Infinity;
}

function identityHeaders(identity: Identity): Array<[string, string]> {
  const headers: Array<[string, string]> = [[SET_HEADERS.authMode, identity.mode]];
  if (identity.consumer !== undefined) headers.push([SET_HEADERS.consumer, identity.consumer]);
  if (identity.credential !== undefined) headers.push([SET_HEADERS.credential, identity.credential]);
  const scopes = identity.scopes.filter(headerSafe);
  if (scopes.length > 0) headers.push([SET_HEADERS.scopes, scopes.join(' ')]);
  return headers;
}

/**
 * Identity and claim-mapped headers this answer does not set: removed, so no
 * client copy can pass as the gateway's (the listener strips them too; this is
 * the second line).
 */
function staleIdentityHeaders(identity: Identity, alsoSet: readonly string[], index: AuthzIndex): string[] {
  const set = new Set([...identityHeaders(identity).map(([name]) => name), ...alsoSet]);
  return guardedHeaders(index).filter((name) => !set.has(name));
}

// The guarded names depend only on the index: worked out once per State, not per check.
const guardedByIndex = new WeakMap<AuthzIndex, readonly string[]>();

/** Identity headers and every provider's claim-mapped headers, sorted. */
function guardedHeaders(index: AuthzIndex): readonly string[] {
  let names = guardedByIndex.get(index);
  if (!names) {
    const all = new Set<string>([...IDENTITY_HEADERS, ...Object.values(SET_HEADERS)]);
    for (const provider of index.providers.values()) for (const name of claimHeaders(provider)) all.add(name);
    names = [...all].sort();
    guardedByIndex.set(index, names);
  }
  return names;
}

/** Visible ASCII and spaces only, bounded: what is safe to put in a header value. */
function headerSafe(value: string): boolean {
  return value.length <= 1024 && /^[\x20-\x7E]*$/.test(value);
}

/** The provider's claims_to_headers, for claims present and safe as header values. */
function claimValues(provider: JwtProvider, claims: Record<string, unknown>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const { claim, header } of provider.claims_to_headers) {
    const value = claimAt(claims, claim);
    const text =
      typeof value === 'string' ? value
      : typeof value === 'number' || typeof value === 'boolean' ? String(value)
      : Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.join(',')
      : value !== undefined && value !== null ? JSON.stringify(value)
      : undefined;
    if (text !== undefined && headerSafe(text)) out.push([header, text]);
  }
  return out;
}
