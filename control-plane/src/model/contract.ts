// Names shared between translate/ (which writes them into Envoy config) and the
// services Envoy calls: authz/ reads the ext_authz context extensions and sets the
// identity headers and dynamic metadata; ratelimit/ reads the descriptors. Keeping
// them here (model/ is importable by all three) makes the contract one definition.
// This file imports nothing (no zod): the request-path worker loads it without
// the schemas (test/unit/request-path-imports.test.ts).

/** The headers the authz service sets on an authenticated request, by meaning. */
export const AUTHZ_SET_HEADERS = {
  consumer: 'x-sluice-consumer',
  credential: 'x-sluice-credential',
  authMode: 'x-sluice-auth-mode',
  scopes: 'x-sluice-scopes',
  jwtIssuer: 'x-sluice-jwt-issuer',
  jwtSubject: 'x-sluice-jwt-subject',
} as const;

/** Every client-sent header with this prefix is removed, whatever follows it. */
export const IDENTITY_HEADER_PREFIX = 'x-sluice-';

/** Identity headers: the ones auth sets plus common ones upstreams trust; any client-sent copy is stripped before ext_authz runs. */
export const IDENTITY_HEADERS: readonly string[] = ['x-consumer-id', ...Object.values(AUTHZ_SET_HEADERS), 'x-user-id'];

/** True for headers a client must never be able to supply (x-sluice-*, x-user-id, x-consumer-id). */
export function isIdentityHeader(name: string): boolean {
  return name.startsWith(IDENTITY_HEADER_PREFIX) || IDENTITY_HEADERS.includes(name);
}

/** The request headers a credential arrives in. */
export const CREDENTIAL_HEADERS = { authorization: 'authorization', apiKey: 'x-api-key' } as const;

/**
 * The request headers the authz service reads: the credential headers, and the
 * identity headers (a client's copy is removed again). translate/ asks Envoy for
 * exactly these (ext_authz allowed_headers); authz/'s wire decoder keeps only these.
 */
export const AUTHZ_READ_HEADERS = {
  exact: [...Object.values(CREDENTIAL_HEADERS), ...IDENTITY_HEADERS.filter((name) => !name.startsWith(IDENTITY_HEADER_PREFIX))],
  prefix: IDENTITY_HEADER_PREFIX,
} as const;

export function authzReadsHeader(name: string): boolean {
  return name.startsWith(AUTHZ_READ_HEADERS.prefix) || AUTHZ_READ_HEADERS.exact.includes(name);
}

/**
 * ext_authz CheckRequest.attributes.context_extensions keys (per-route settings).
 * Values are strings; lists are sorted and space-separated.
 */
export const AUTHZ_CONTEXT = {
  /** The Sluice route name. */
  route: 'sluice_route',
  /** Route auth mode: jwt | api_key | any. */
  authMode: 'sluice_auth_mode',
  /** Required scopes, space-separated (absent when none are required). */
  scopes: 'sluice_scopes',
  /** Allowed JWT provider names, space-separated (absent: any provider). */
  jwtProviders: 'sluice_jwt_providers',
  /** Query parameter that may carry the API key (absent: headers only); removed before the upstream. */
  apiKeyQuery: 'sluice_api_key_query',
} as const;

/** Dynamic-metadata namespace Envoy stores ext_authz CheckResponse.dynamic_metadata under. */
export const AUTHZ_METADATA_NAMESPACE = 'envoy.filters.http.ext_authz';

/** Key in that namespace holding the authenticated consumer name (used for rate-limit keys). */
export const AUTHZ_METADATA_CONSUMER = 'consumer';

/**
 * Rate-limit descriptors sent to the rate-limit service. Each policy on a route
 * yields one descriptor whose first entry names the policy, followed by one entry
 * per element of the policy's `key`, in the policy's order:
 *
 *   (sluice_policy, <policy name>)
 *   route      -> (route, <route name>)
 *   consumer   -> (consumer, <consumer name> | "anonymous")
 *   client_ip  -> (remote_address, <client IP>)
 *   {header}   -> (header:<name>, <value>)   entry omitted when the header is absent
 */
export const RATELIMIT_DESCRIPTOR = {
  policy: 'sluice_policy',
  route: 'route',
  consumer: 'consumer',
  /** Envoy's fixed key for the remote_address action. */
  clientIp: 'remote_address',
  headerPrefix: 'header:',
  /** Consumer value when the request is not authenticated. */
  anonymousConsumer: 'anonymous',
} as const;

/** Headers the authz service sets from a provider's claims (also stripped from client requests). */
export function claimHeaders(provider: { readonly claims_to_headers: readonly { readonly header: string }[] }): string[] {
  return provider.claims_to_headers.map((entry) => entry.header);
}

/** A rate-limit policy's periods (RateLimitPolicy.limit.per). */
export const RATE_LIMIT_PERIODS = ['second', 'minute', 'hour', 'day'] as const;
export type RateLimitPeriod = (typeof RATE_LIMIT_PERIODS)[number];

export const PERIOD_SECONDS: Readonly<Record<RateLimitPeriod, number>> = {
  second: 1,
  minute: 60,
  hour: 3_600,
  day: 86_400,
};
