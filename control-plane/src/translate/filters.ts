// The HTTP filter chain and the per-route pieces that drive it.
//
// Chain (each filter present only when some route needs it, except the first and last):
//   header_mutation  strips client-sent identity headers, before anything reads them
//   cors             per-route CorsPolicy in typed_per_filter_config
//   ext_authz        disabled by default; every route carries ExtAuthzPerRoute:
//                    {disabled: true} for auth none and on_error allow, else
//                    check_settings.context_extensions (route name, auth mode, scopes,
//                    providers, API-key query parameter) for the authz service.
//                    failure_mode_allow false: an unanswered check is refused with 503.
//   ext_authz (fail open)  the same filter with failure_mode_allow true, present only
//                    when some route has auth.on_error allow (failure_mode_allow is a
//                    filter-level setting); it checks exactly those routes, and is
//                    {disabled: true} on every other route. Stats under
//                    ext_authz.fail_open.*. Both put their dynamic metadata under
//                    envoy.filters.http.ext_authz (Envoy's fixed namespace, whatever
//                    the filter's name), so rate-limit keys read one place.
//   local_ratelimit  disabled by default; a per-route token bucket (a per-Envoy shield,
//                    see localShieldPolicy) in typed_per_filter_config
//   ratelimit        global limits: RouteAction.rate_limits descriptors per policy (the
//                    route's own and the gateway-scoped ones it did not opt out of);
//                    failure_mode_deny false: an unreachable service admits.
//   ratelimit (fail closed)  the same filter with failure_mode_deny true (503), present
//                    only when some route has an on_error deny policy; on by
//                    RateLimitPerRoute on exactly those routes, which turn the first
//                    off (FilterConfig disabled). Stats under ratelimit.fail_closed.*.
//   router
import {
  AUTHZ_CONTEXT,
  AUTHZ_METADATA_CONSUMER,
  AUTHZ_METADATA_NAMESPACE,
  AUTHZ_READ_HEADERS,
  CREDENTIAL_HEADERS,
  IDENTITY_HEADER_PREFIX,
  IDENTITY_HEADERS,
  PERIOD_SECONDS,
  RATELIMIT_DESCRIPTOR,
  type RateLimitKeyPart,
  type RateLimitPolicy,
  type Route,
  type State,
  routePolicies,
  claimHeaders,
  isForwarding,
} from '../model/index.ts';
import type { Any, HttpConnectionManager } from '../proto/codec.ts';
import type { RateLimit as RouteRateLimit } from '../proto/generated/envoy/config/route/v3/RateLimit.ts';
import { FILTER, LOCAL_RATELIMIT_STAT_PREFIX } from './names.ts';
import { duration, percent, sortedRecord, typed, uint32 } from './util.ts';
import type { AuthzEndpoint, TranslateOptions } from './options.ts';

export type HttpFilter = NonNullable<HttpConnectionManager['http_filters']>[number];

/** Which optional filters the chain carries for this State and these options. */
export interface FilterNeeds {
  cors: boolean;
  extAuthz: boolean;
  /** Some route with auth asks to be let through when the authz service cannot answer. */
  extAuthzFailOpen: boolean;
  localRateLimit: boolean;
  rateLimit: boolean;
  /** Some rate-limited route has an on_error deny policy: the fail-closed ratelimit filter is needed. */
  rateLimitFailClosed: boolean;
}

/** Lookups the per-route builders need. */
export interface FilterContext {
  needs: FilterNeeds;
  options: TranslateOptions;
  policies: ReadonlyMap<string, RateLimitPolicy>;
  /** Per-filter configs already packed in this translation, by content (many routes share one). */
  anys: Map<string, Any>;
}

/** ext_authz gRPC deadline unless options.authz.timeoutMs says; the service answers from memory (JWKS cached). */
export const DEFAULT_AUTHZ_TIMEOUT_MS = 500;
/**
 * Rate-limit gRPC deadline unless options.ratelimit.timeoutMs says (RATELIMIT_TIMEOUT_MS).
 * Past it, or with the service unreachable, a route follows its policies' on_error:
 * admitted, or 503 when any of them says deny. Generous on purpose: a timeout on
 * a busy machine admits uncounted requests on allow routes (over-admitting).
 */
export const DEFAULT_RATELIMIT_TIMEOUT_MS = 500;

export function filterNeeds(state: State, options: TranslateOptions, policies: ReadonlyMap<string, RateLimitPolicy>): FilterNeeds {
  return needsOf(countNeeds(state.routes, options, policies));
}

/** How many routes need each optional filter: kept between revisions, a change adjusts it by the routes it touched. */
export type NeedCounts = Record<keyof FilterNeeds, number>;

/** Every route's needs, counted. */
export function countNeeds(routes: readonly Route[], options: TranslateOptions, policies: ReadonlyMap<string, RateLimitPolicy>): NeedCounts {
  const counts: NeedCounts = { cors: 0, extAuthz: 0, extAuthzFailOpen: 0, localRateLimit: 0, rateLimit: 0, rateLimitFailClosed: 0 };
  for (const route of routes) addNeeds(counts, route, options, policies, 1);
  return counts;
}

/** Adds (sign 1) or takes away (sign -1) one route's needs. */
export function addNeeds(counts: NeedCounts, route: Route, options: TranslateOptions, policies: ReadonlyMap<string, RateLimitPolicy>, sign: 1 | -1): void {
  if (route.cors !== undefined) counts.cors += sign;
  if (options.authz !== undefined && route.auth.mode !== 'none') {
    counts.extAuthz += sign;
    if (failsOpen(route)) counts.extAuthzFailOpen += sign;
  }
  // Without policies no route has any: the policy lookups are skipped.
  if (policies.size === 0 || !isForwarding(route.action)) return;
  if (localShieldPolicy(route, policies) !== undefined) counts.localRateLimit += sign;
  if (options.ratelimit === undefined) return;
  const known = knownPolicies(route, policies);
  if (known.length > 0) counts.rateLimit += sign;
  if (known.some((policy) => policy.on_error === 'deny')) counts.rateLimitFailClosed += sign;
}

export function needsOf(counts: NeedCounts): FilterNeeds {
  return {
    cors: counts.cors > 0,
    extAuthz: counts.extAuthz > 0,
    extAuthzFailOpen: counts.extAuthzFailOpen > 0,
    localRateLimit: counts.localRateLimit > 0,
    rateLimit: counts.rateLimit > 0,
    rateLimitFailClosed: counts.rateLimitFailClosed > 0,
  };
}

// ---- listener side -------------------------------------------------------------


/**
 * Identity headers outside the x-sluice- family (x-user-id, x-consumer-id) plus
 * every header a JWT provider fills from claims, sorted; x-sluice-* names are
 * covered by the prefix rule.
 */
export function strippedHeaders(state: State): string[] {
  const names = new Set<string>(IDENTITY_HEADERS);
  for (const provider of state.jwt_providers) for (const header of claimHeaders(provider)) names.add(header);
  return [...names].filter((name) => !name.startsWith(IDENTITY_HEADER_PREFIX)).sort();
}

export function httpFilters(state: State, needs: FilterNeeds, options: TranslateOptions): HttpFilter[] {
  const filters: HttpFilter[] = [stripIdentityFilter(state)];
  if (needs.cors) filters.push({ name: FILTER.cors, typed_config: typed('envoy.extensions.filters.http.cors.v3.Cors', {}) });
  if (needs.extAuthz && options.authz) filters.push(extAuthzFilter(options.authz, false));
  if (needs.extAuthzFailOpen && options.authz) filters.push(extAuthzFilter(options.authz, true));
  if (needs.localRateLimit) filters.push(localRateLimitFilter());
  if (needs.rateLimit && options.ratelimit) filters.push(rateLimitFilter(options.ratelimit, false));
  if (needs.rateLimitFailClosed && options.ratelimit) filters.push(rateLimitFilter(options.ratelimit, true));
  filters.push({ name: FILTER.router, typed_config: typed('envoy.extensions.filters.http.router.v3.Router', {}) });
  return filters;
}

/**
 * Runs first so ext_authz and the upstream never see a client's copy of the
 * headers auth sets. (Route/virtual-host request_headers_to_remove would run in
 * the router, after ext_authz, and strip auth's own headers too.)
 *
 * The whole x-sluice- family goes by prefix (remove_on_match), so a header named
 * tomorrow is stripped today. remove_on_match is missing from the Envoy protos in
 * @grpc/grpc-js-xds; Sluice defines the message wire-compatibly in proto/ rather
 * than using a Lua filter (a script run per request on the hot path, and a second
 * language to review) or leaving it to the authz service (it runs only on routes
 * with auth, and every route must be covered). Header names reach filters
 * lowercased (HTTP/1 is folded by Envoy, HTTP/2 forbids capitals), so a prefix
 * match is case-proof; underscore variants are refused by the listener
 * (headers_with_underscores_action).
 */
function stripIdentityFilter(state: State): HttpFilter {
  return {
    name: FILTER.headerMutation,
    typed_config: typed('envoy.extensions.filters.http.header_mutation.v3.HeaderMutation', {
      mutations: {
        request_mutations: [
          { remove_on_match: { key_matcher: { prefix: IDENTITY_HEADER_PREFIX, ignore_case: true } } },
          ...strippedHeaders(state).map((header) => ({ remove: header })),
        ],
      },
    }),
  };
}

/** True when the route is let through unauthenticated if the authz service cannot answer. */
function failsOpen(route: Route): boolean {
  return route.auth.mode !== 'none' && route.auth.on_error === 'allow';
}

/** The headers credentials come in (authz/decide.ts reads these two). */

/**
 * Route-level request_headers_to_remove for on_error allow routes: when the check
 * fails open nobody removed the credential, so the route does (the router applies
 * it after ext_authz; on a successful check these are already gone). The model
 * keeps API keys in the query off such routes for the same reason.
 */
export function failOpenRemovedHeaders(route: Route): string[] {
  return failsOpen(route) ? Object.values(CREDENTIAL_HEADERS) : [];
}

/**
 * failOpen false: the fail-closed filter (an unanswered check gets 503); true: the
 * failure_mode_allow twin for on_error allow routes. Envoy lets an errored check
 * through without calling the service again, so no identity headers are set then
 * (the listener has already stripped any client copy).
 */
function extAuthzFilter(authz: AuthzEndpoint, failOpen: boolean): HttpFilter {
  return {
    name: failOpen ? FILTER.extAuthzFailOpen : FILTER.extAuthz,
    // Off unless a route's per-filter config turns it on: unmatched requests (404s) skip authz.
    disabled: true,
    typed_config: typed('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', {
      grpc_service: { envoy_grpc: { cluster_name: authz.clusterName }, timeout: duration(authz.timeoutMs ?? DEFAULT_AUTHZ_TIMEOUT_MS) },
      transport_api_version: 'V3',
      failure_mode_allow: failOpen,
      // An unreachable authz service is an outage, not a refusal.
      status_on_error: failOpen ? undefined : { code: 'ServiceUnavailable' },
      stat_prefix: failOpen ? 'fail_open' : undefined,
      allowed_headers: { patterns: authzCheckedHeaders() },
    }),
  };
}

/**
 * The request headers the authz service reads (model/contract.ts AUTHZ_READ_HEADERS).
 * Envoy sends every header without this list, and each one is encoded by Envoy and
 * decoded by the service on every check. The path (with the API-key query), host and
 * method travel in their own CheckRequest fields whatever this says; claim-mapped
 * headers are removed by name without being seen.
 */
function authzCheckedHeaders(): Array<{ exact: string } | { prefix: string }> {
  return [...AUTHZ_READ_HEADERS.exact.map((name) => ({ exact: name })), { prefix: AUTHZ_READ_HEADERS.prefix }];
}

function localRateLimitFilter(): HttpFilter {
  return {
    name: FILTER.localRateLimit,
    disabled: true,
    typed_config: typed('envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', {
      stat_prefix: LOCAL_RATELIMIT_STAT_PREFIX,
    }),
  };
}

/**
 * Envoy's failure_mode_deny is per filter, Sluice's on_error per policy. So the
 * chain carries up to two ratelimit filters with the same domain and service:
 * the usual one admits when the service cannot answer; the fail-closed one
 * (off unless a route turns it on) answers 503 then. A route with any deny
 * policy turns the second on and the first off (the service applies the same
 * "any deny refuses" rule when Redis is down), so each request still makes one
 * call, with all its descriptors decided together.
 */
function rateLimitFilter(service: NonNullable<TranslateOptions['ratelimit']>, failClosed: boolean): HttpFilter {
  return {
    name: failClosed ? FILTER.rateLimitFailClosed : FILTER.rateLimit,
    ...(failClosed ? { disabled: true } : {}),
    typed_config: typed('envoy.extensions.filters.http.ratelimit.v3.RateLimit', {
      domain: service.domain,
      timeout: duration(service.timeoutMs ?? DEFAULT_RATELIMIT_TIMEOUT_MS),
      failure_mode_deny: failClosed,
      ...(failClosed ? { status_on_error: { code: 'ServiceUnavailable' as const }, stat_prefix: 'fail_closed' } : {}),
      rate_limit_service: {
        grpc_service: { envoy_grpc: { cluster_name: service.clusterName } },
        transport_api_version: 'V3',
      },
    }),
  };
}

/** True when one of the route's policies refuses when it cannot be counted. */
function failsClosed(route: Route, policies: ReadonlyMap<string, RateLimitPolicy>): boolean {
  return knownPolicies(route, policies).some((policy) => policy.on_error === 'deny');
}

// ---- route side ----------------------------------------------------------------

/** typed_per_filter_config for one route, keys sorted; undefined when empty. */
export function perFilterConfig(route: Route, ctx: FilterContext): Record<string, Any> | undefined {
  const entries: Array<[string, Any]> = [];
  const cors = route.cors;
  if (ctx.needs.cors && cors) entries.push([FILTER.cors, shared(ctx, ['cors', cors], () => corsPolicy(cors))]);
  if (ctx.needs.extAuthz) {
    // The route is checked by exactly one of the two filters; the other is off for it.
    const off = shared(ctx, ['authz-off'], disabledExtAuthz);
    const check = route.auth.mode === 'none' ? off : extAuthzPerRoute(route);
    const openRoute = failsOpen(route);
    entries.push([FILTER.extAuthz, openRoute ? off : check]);
    if (ctx.needs.extAuthzFailOpen) entries.push([FILTER.extAuthzFailOpen, openRoute ? check : off]);
  }
  const shield = ctx.needs.localRateLimit && isForwarding(route.action) ? localShieldPolicy(route, ctx.policies) : undefined;
  if (shield) entries.push([FILTER.localRateLimit, shared(ctx, ['shield', shield], () => localRateLimitPerRoute(shield))]);
  if (ctx.needs.rateLimitFailClosed && isForwarding(route.action) && failsClosed(route, ctx.policies)) {
    entries.push([FILTER.rateLimit, shared(ctx, ['ratelimit-off'], filterOff)]);
    entries.push([FILTER.rateLimitFailClosed, shared(ctx, ['ratelimit-on'], () => typed('envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute', {}))]);
  }
  return entries.length > 0 ? sortedRecord(entries) : undefined;
}

/** Packs once per distinct content within a translation. */
function shared(ctx: FilterContext, key: unknown[], pack: () => Any): Any {
  const id = JSON.stringify(key);
  let any = ctx.anys.get(id);
  if (!any) ctx.anys.set(id, (any = pack()));
  return any;
}

function corsPolicy(cors: NonNullable<Route['cors']>): Any {
  const join = (items: readonly string[]) => (items.length > 0 ? items.join(',') : undefined);
  return typed('envoy.extensions.filters.http.cors.v3.CorsPolicy', {
    allow_origin_string_match: cors.allow_origins.map((origin) =>
      typeof origin === 'string' ? { exact: origin } : { safe_regex: { regex: origin.regex } },
    ),
    allow_methods: join(cors.allow_methods),
    allow_headers: join(cors.allow_headers),
    expose_headers: join(cors.expose_headers),
    max_age: cors.max_age_s === undefined ? undefined : String(cors.max_age_s),
    allow_credentials: cors.allow_credentials ? { value: true } : undefined,
  });
}

function disabledExtAuthz(): Any {
  return typed('envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', { disabled: true });
}

/** check_settings for the authz service; only for routes whose auth mode is not none. */
function extAuthzPerRoute(route: Route): Any {
  const context: Array<[string, string]> = [
    [AUTHZ_CONTEXT.route, route.name],
    [AUTHZ_CONTEXT.authMode, route.auth.mode],
  ];
  if (route.auth.scopes.length > 0) context.push([AUTHZ_CONTEXT.scopes, [...route.auth.scopes].sort().join(' ')]);
  if (route.auth.jwt_providers) context.push([AUTHZ_CONTEXT.jwtProviders, [...route.auth.jwt_providers].sort().join(' ')]);
  if (route.auth.api_key_query !== undefined) context.push([AUTHZ_CONTEXT.apiKeyQuery, route.auth.api_key_query]);
  return typed('envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', {
    check_settings: { context_extensions: sortedRecord(context) },
  });
}

/**
 * The local shield: a per-Envoy token bucket in front of the global limit, so a
 * flood is shed without a gRPC call per request. Only policies keyed by route alone
 * qualify (a local bucket cannot count per consumer or client), and one Envoy can
 * never legitimately pass more than the global limit, so a bucket of the limit
 * (+ burst) refilled each period does not refuse what the global limit would admit
 * (the global rate-limit service stays the authority). With several such policies
 * the strictest one is used.
 */
export function localShieldPolicy(route: Route, policies: ReadonlyMap<string, RateLimitPolicy>): RateLimitPolicy | undefined {
  const candidates = knownPolicies(route, policies).filter((p) => p.key.length === 1 && p.key[0] === 'route');
  let best: RateLimitPolicy | undefined;
  for (const policy of candidates) {
    if (!best || stricter(policy, best)) best = policy;
  }
  return best;
}

/** True when a admits fewer requests per second than b (name breaks ties). */
function stricter(a: RateLimitPolicy, b: RateLimitPolicy): boolean {
  const left = a.limit.requests * PERIOD_SECONDS[b.limit.per];
  const right = b.limit.requests * PERIOD_SECONDS[a.limit.per];
  return left < right || (left === right && a.name < b.name);
}

function localRateLimitPerRoute(policy: RateLimitPolicy): Any {
  const always = (runtimeKey: string) => ({ default_value: percent(100), runtime_key: runtimeKey });
  return typed('envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', {
    stat_prefix: LOCAL_RATELIMIT_STAT_PREFIX,
    token_bucket: {
      max_tokens: policy.limit.requests + (policy.burst ?? 0),
      tokens_per_fill: uint32(policy.limit.requests),
      fill_interval: duration(PERIOD_SECONDS[policy.limit.per] * 1000),
    },
    filter_enabled: always('sluice.local_ratelimit.enabled'),
    filter_enforced: always('sluice.local_ratelimit.enforced'),
  });
}

/** Turns a filter off for one route (any filter; its config is ignored). */
function filterOff(): Any {
  return typed('envoy.config.route.v3.FilterConfig', { disabled: true });
}

/** The route's own policies, then the gateway-scoped ones it did not opt out of (model's routePolicies). */
function knownPolicies(route: Route, policies: ReadonlyMap<string, RateLimitPolicy>): RateLimitPolicy[] {
  return routePolicies(route, policies);
}

/**
 * RouteAction.rate_limits: one descriptor per policy (layout in model/contract.ts,
 * RATELIMIT_DESCRIPTOR), in the route's policy order.
 */
export function routeRateLimits(route: Route, ctx: FilterContext): RouteRateLimit[] | undefined {
  if (!ctx.needs.rateLimit) return undefined;
  const limits = knownPolicies(route, ctx.policies).map((policy) => ({
    actions: [
      { generic_key: { descriptor_key: RATELIMIT_DESCRIPTOR.policy, descriptor_value: policy.name } },
      ...policy.key.map((part) => descriptorAction(part, route)),
    ],
  }));
  return limits.length > 0 ? limits : undefined;
}

type RateLimitAction = NonNullable<RouteRateLimit['actions']>[number];

function descriptorAction(part: RateLimitKeyPart, route: Route): RateLimitAction {
  if (part === 'route') return { generic_key: { descriptor_key: RATELIMIT_DESCRIPTOR.route, descriptor_value: route.name } };
  if (part === 'client_ip') return { remote_address: {} };
  if (part === 'consumer') {
    return {
      metadata: {
        descriptor_key: RATELIMIT_DESCRIPTOR.consumer,
        metadata_key: { key: AUTHZ_METADATA_NAMESPACE, path: [{ key: AUTHZ_METADATA_CONSUMER }] },
        default_value: RATELIMIT_DESCRIPTOR.anonymousConsumer,
        source: 'DYNAMIC',
      },
    };
  }
  return {
    request_headers: {
      header_name: part.header,
      descriptor_key: `${RATELIMIT_DESCRIPTOR.headerPrefix}${part.header}`,
      // Without the header the entry is left out rather than the whole descriptor,
      // so omitting a header cannot be used to escape the limit.
      skip_if_absent: true,
    },
  };
}
