// The HTTP filter chain and the per-route pieces that drive it.
//
// Chain (each filter present only when some route needs it, except the first and last):
//   header_mutation  strips client-sent identity headers, before anything reads them
//   cors             per-route CorsPolicy in typed_per_filter_config
//   ext_authz        disabled by default; every route carries ExtAuthzPerRoute:
//                    {disabled: true} for auth none, else check_settings.context_extensions
//                    (route name, auth mode, scopes, providers) for the authz service
//   local_ratelimit  disabled by default; a per-route token bucket (a per-Envoy shield,
//                    see localShieldPolicy) in typed_per_filter_config
//   ratelimit        global limits: RouteAction.rate_limits descriptors per policy
//   router
import {
  AUTHZ_CONTEXT,
  AUTHZ_METADATA_CONSUMER,
  AUTHZ_METADATA_NAMESPACE,
  IDENTITY_HEADERS,
  PERIOD_SECONDS,
  RATELIMIT_DESCRIPTOR,
  type RateLimitKeyPart,
  type RateLimitPolicy,
  type Route,
  type State,
  claimHeaders,
  isForwarding,
} from '../model/index.ts';
import type { Any, HttpConnectionManager } from '../proto/codec.ts';
import type { RateLimit as RouteRateLimit } from '../proto/generated/envoy/config/route/v3/RateLimit.ts';
import { FILTER, LOCAL_RATELIMIT_STAT_PREFIX } from './names.ts';
import { duration, percent, sortedRecord, typed, uint32 } from './util.ts';
import type { TranslateOptions } from './options.ts';

export type HttpFilter = NonNullable<HttpConnectionManager['http_filters']>[number];

/** Which optional filters the chain carries for this State and these options. */
export interface FilterNeeds {
  cors: boolean;
  extAuthz: boolean;
  localRateLimit: boolean;
  rateLimit: boolean;
}

/** Lookups the per-route builders need. */
export interface FilterContext {
  needs: FilterNeeds;
  options: TranslateOptions;
  policies: ReadonlyMap<string, RateLimitPolicy>;
  /** Per-filter configs already packed in this translation, by content (many routes share one). */
  anys: Map<string, Any>;
}

/** ext_authz gRPC deadline; the authz service answers from memory (JWKS cached). */
const AUTHZ_TIMEOUT_MS = 500;
/** Rate-limit gRPC deadline; on timeout the request is let through (failure_mode_deny false). */
const RATELIMIT_TIMEOUT_MS = 100;

export function filterNeeds(state: State, options: TranslateOptions, policies: ReadonlyMap<string, RateLimitPolicy>): FilterNeeds {
  const forwarding = state.routes.filter((route) => isForwarding(route.action));
  return {
    cors: state.routes.some((route) => route.cors !== undefined),
    extAuthz: options.authz !== undefined && state.routes.some((route) => route.auth.mode !== 'none'),
    localRateLimit: forwarding.some((route) => localShieldPolicy(route, policies) !== undefined),
    rateLimit: options.ratelimit !== undefined && forwarding.some((route) => knownPolicies(route, policies).length > 0),
  };
}

// ---- listener side -------------------------------------------------------------

/** Every client-sent header with this prefix is removed, whatever follows it. */
export const IDENTITY_HEADER_PREFIX = 'x-sluice-';

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
  if (needs.extAuthz && options.authz) filters.push(extAuthzFilter(options.authz.clusterName));
  if (needs.localRateLimit) filters.push(localRateLimitFilter());
  if (needs.rateLimit && options.ratelimit) filters.push(rateLimitFilter(options.ratelimit.clusterName, options.ratelimit.domain));
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

function extAuthzFilter(clusterName: string): HttpFilter {
  return {
    name: FILTER.extAuthz,
    // Off unless a route's per-filter config turns it on: unmatched requests (404s) skip authz.
    disabled: true,
    typed_config: typed('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', {
      grpc_service: { envoy_grpc: { cluster_name: clusterName }, timeout: duration(AUTHZ_TIMEOUT_MS) },
      transport_api_version: 'V3',
      failure_mode_allow: false,
      // An unreachable authz service is an outage, not a refusal.
      status_on_error: { code: 'ServiceUnavailable' },
    }),
  };
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

function rateLimitFilter(clusterName: string, domain: string): HttpFilter {
  return {
    name: FILTER.rateLimit,
    typed_config: typed('envoy.extensions.filters.http.ratelimit.v3.RateLimit', {
      domain,
      timeout: duration(RATELIMIT_TIMEOUT_MS),
      failure_mode_deny: false,
      rate_limit_service: {
        grpc_service: { envoy_grpc: { cluster_name: clusterName } },
        transport_api_version: 'V3',
      },
    }),
  };
}

// ---- route side ----------------------------------------------------------------

/** typed_per_filter_config for one route, keys sorted; undefined when empty. */
export function perFilterConfig(route: Route, ctx: FilterContext): Record<string, Any> | undefined {
  const entries: Array<[string, Any]> = [];
  const cors = route.cors;
  if (ctx.needs.cors && cors) entries.push([FILTER.cors, shared(ctx, ['cors', cors], () => corsPolicy(cors))]);
  if (ctx.needs.extAuthz) {
    const authz = route.auth.mode === 'none' ? shared(ctx, ['authz-off'], disabledExtAuthz) : extAuthzPerRoute(route);
    entries.push([FILTER.extAuthz, authz]);
  }
  const shield = ctx.needs.localRateLimit && isForwarding(route.action) ? localShieldPolicy(route, ctx.policies) : undefined;
  if (shield) entries.push([FILTER.localRateLimit, shared(ctx, ['shield', shield], () => localRateLimitPerRoute(shield))]);
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

/** The route's policies that exist in the State (validated States have all of them). */
function knownPolicies(route: Route, policies: ReadonlyMap<string, RateLimitPolicy>): RateLimitPolicy[] {
  return route.rate_limits.flatMap((name) => {
    const policy = policies.get(name);
    return policy ? [policy] : [];
  });
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
