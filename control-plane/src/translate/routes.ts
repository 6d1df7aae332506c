// One Sluice route -> its Envoy routes (one, or a few for header/cookie canaries).
import type { HeaderMatch, QueryMatch, Route, RouteAction as SluiceAction, Upstream } from '../model/index.ts';
import { cookieCanaryRegex } from '../model/index.ts';
import type { Route as EnvoyRoute } from '../proto/generated/envoy/config/route/v3/Route.ts';
import type { RouteAction } from '../proto/generated/envoy/config/route/v3/RouteAction.ts';
import type { RouteMatch } from '../proto/generated/envoy/config/route/v3/RouteMatch.ts';
import type { HeaderMatcher } from '../proto/generated/envoy/config/route/v3/HeaderMatcher.ts';
import type { QueryParameterMatcher } from '../proto/generated/envoy/config/route/v3/QueryParameterMatcher.ts';
import type { HeaderValueOption } from '../proto/generated/envoy/config/core/v3/HeaderValueOption.ts';
import { type FilterContext, failOpenRemovedHeaders, perFilterConfig, routeRateLimits } from './filters.ts';
import { clusterName } from './names.ts';
import type { RouteStatsMode } from './options.ts';
import { bool, compareStrings, duration, literalHeaderValue, percent, uint32 } from './util.ts';

export type { EnvoyRoute };

export interface RouteContext extends FilterContext {
  upstreams: ReadonlyMap<string, Upstream>;
  /** RouteActions already encoded in this translation, by their JSON (route-config.ts encodeRoute). */
  encodedActions: Map<string, Uint8Array>;
}

/** Where a forwarding route sends traffic: upstream names with percent weights (> 0). */
type Targets = Array<{ upstream: string; weight: number }>;

const REDIRECT_CODE = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
} as const;

/**
 * The Envoy routes for one Sluice route, in match order. A canary with a header
 * and/or cookie opt-in becomes one route per opt-in (to the canary) followed by
 * the regular route. All carry the Sluice route name.
 *
 * Whatever this reads besides `route` must be part of routeCacheKey (route-config.ts).
 */
export function envoyRoutes(route: Route, ctx: RouteContext): EnvoyRoute[] {
  if (route.auth.mode !== 'none' && !ctx.options.authz) return [failClosed(route)];
  const canary = route.action.canary;
  const optIns: HeaderMatcher[] = [];
  if (canary?.header) optIns.push({ name: canary.header.name, string_match: { exact: canary.header.value } });
  if (canary?.cookie) optIns.push(cookieMatcher(canary.cookie.name, canary.cookie.value));
  const optInRoutes = optIns.map((matcher) => buildRoute(route, ctx, [matcher], [{ upstream: canary!.canary, weight: 100 }]));
  return [...optInRoutes, buildRoute(route, ctx, [], forwardTargets(route.action))];
}

function buildRoute(route: Route, ctx: RouteContext, extraHeaders: HeaderMatcher[], targets: Targets): EnvoyRoute {
  const envoyRoute: EnvoyRoute = {
    name: route.name,
    // Per-route upstream stats (vhost.<vhost>.route.<name>.*), which the fleet stats sink reads.
    stat_prefix: hasRouteStats(route, ctx.options.routeStats ?? 'all') ? route.name : undefined,
    match: routeMatch(route, extraHeaders),
    ...actionFields(route, ctx, targets),
    request_headers_to_add: headersToAdd(route.request_headers?.add),
    request_headers_to_remove: requestHeadersToRemove(route),
    response_headers_to_add: headersToAdd(route.response_headers?.add),
    response_headers_to_remove: nonEmpty(route.response_headers?.remove),
    typed_per_filter_config: perFilterConfig(route, ctx),
  };
  return envoyRoute;
}

/** A route that needs auth but has no authz service to ask: refuse rather than serve it open. */
function failClosed(route: Route): EnvoyRoute {
  return {
    name: route.name,
    match: routeMatch(route, []),
    direct_response: { status: 503, body: { inline_string: 'authorization service not configured\n' } },
  };
}

// ---- match ---------------------------------------------------------------------

export function routeMatch(route: Route, extraHeaders: HeaderMatcher[]): RouteMatch {
  const { path, headers, query } = route.match;
  const match: RouteMatch =
    path.exact !== undefined ? { path: path.exact } : path.regex !== undefined ? { safe_regex: { regex: path.regex } } : { prefix: path.prefix };
  // The model allows ignore_case only with prefix and exact (Envoy ignores it for regexes).
  if (path.ignore_case === true) match.case_sensitive = bool(false);
  const methods = methodMatcher(route);
  const headerMatchers = [...(methods ? [methods] : []), ...(headers ?? []).map(headerMatcher), ...extraHeaders];
  if (headerMatchers.length > 0) match.headers = headerMatchers;
  if (query && query.length > 0) match.query_parameters = query.map(queryMatcher);
  return match;
}

/**
 * Methods match the `:method` pseudo-header. A CORS route also admits OPTIONS so
 * that preflight requests reach the CORS filter.
 */
function methodMatcher(route: Route): HeaderMatcher | undefined {
  const listed = route.match.methods;
  if (!listed) return undefined;
  const methods = new Set<string>(listed);
  if (route.cors) methods.add('OPTIONS');
  const sorted = [...methods].sort(compareStrings);
  if (sorted.length === 1) return { name: ':method', string_match: { exact: sorted[0] } };
  return { name: ':method', string_match: { safe_regex: { regex: sorted.join('|') } } };
}

function headerMatcher(header: HeaderMatch): HeaderMatcher {
  const matcher: HeaderMatcher = { name: header.name };
  if (header.exact !== undefined) matcher.string_match = { exact: header.exact };
  else if (header.prefix !== undefined) matcher.string_match = { prefix: header.prefix };
  else if (header.regex !== undefined) matcher.string_match = { safe_regex: { regex: header.regex } };
  else matcher.present_match = true;
  if (header.invert) {
    matcher.invert_match = true;
    // "not x=1" should match a request without x; Envoy skips absent headers
    // for value matchers unless told to read them as empty.
    if (matcher.string_match) matcher.treat_missing_header_as_empty = true;
  }
  return matcher;
}

function queryMatcher(query: QueryMatch): QueryParameterMatcher {
  if (query.exact !== undefined) return { name: query.name, string_match: { exact: query.exact } };
  if (query.regex !== undefined) return { name: query.name, string_match: { safe_regex: { regex: query.regex } } };
  return { name: query.name, present_match: true };
}

/**
 * Envoy has no cookie matcher; match the Cookie header instead, with the regex the
 * model defines and checks (model/route.ts cookieCanaryRegex).
 */
export function cookieMatcher(name: string, value: string): HeaderMatcher {
  return { name: 'cookie', string_match: { safe_regex: { regex: cookieCanaryRegex(name, value) } } };
}

// ---- action --------------------------------------------------------------------

/** Traffic targets of a forwarding action (zero weights dropped); empty for the others. */
function forwardTargets(action: SluiceAction): Targets {
  if (action.upstream !== undefined) return [{ upstream: action.upstream, weight: 100 }];
  if (action.split) return action.split.filter((entry) => entry.weight > 0);
  if (action.canary) {
    const { primary, canary, weight } = action.canary;
    return [
      { upstream: primary, weight: 100 - weight },
      { upstream: canary, weight },
    ].filter((target) => target.weight > 0);
  }
  return [];
}

type ActionFields = Pick<EnvoyRoute, 'route' | 'direct_response' | 'redirect'>;

function actionFields(route: Route, ctx: RouteContext, targets: Targets): ActionFields {
  const { direct_response: direct, redirect } = route.action;
  if (direct) {
    return { direct_response: { status: direct.status, body: direct.body === undefined ? undefined : { inline_string: direct.body } } };
  }
  if (redirect) {
    return {
      redirect: {
        scheme_redirect: redirect.scheme,
        host_redirect: redirect.host,
        path_redirect: redirect.path,
        response_code: REDIRECT_CODE[redirect.status],
      },
    };
  }
  return { route: routeAction(route, ctx, targets) };
}

function routeAction(route: Route, ctx: RouteContext, targets: Targets): RouteAction {
  const action: RouteAction = clusterSpecifier(targets); // a fresh object: not spread into another
  if (route.rewrite?.prefix !== undefined) action.prefix_rewrite = route.rewrite.prefix;
  if (route.rewrite?.regex) {
    action.regex_rewrite = { pattern: { regex: route.rewrite.regex.pattern }, substitution: route.rewrite.regex.substitution };
  }
  if (route.rewrite?.host !== undefined) action.host_rewrite_literal = route.rewrite.host;
  if (route.timeout_ms !== undefined) action.timeout = duration(route.timeout_ms);
  if (route.retries) action.retry_policy = retryPolicy(route.retries);
  if (route.mirror) {
    action.request_mirror_policies = [
      { cluster: clusterName(route.mirror.upstream), runtime_fraction: { default_value: percent(route.mirror.percent) } },
    ];
  }
  action.rate_limits = routeRateLimits(route, ctx);
  action.hash_policy = hashPolicies(targets, ctx.upstreams);
  return action;
}

function clusterSpecifier(targets: Targets): Pick<RouteAction, 'cluster' | 'weighted_clusters'> {
  if (targets.length === 1) return { cluster: clusterName(targets[0]!.upstream) };
  return {
    weighted_clusters: {
      clusters: targets.map((target) => ({ name: clusterName(target.upstream), weight: uint32(target.weight) })),
    },
  };
}

function retryPolicy(retries: NonNullable<Route['retries']>): RouteAction['retry_policy'] {
  return {
    retry_on: retries.on.join(','),
    num_retries: uint32(retries.count),
    per_try_timeout: retries.per_try_timeout_ms === undefined ? undefined : duration(retries.per_try_timeout_ms),
    retry_back_off:
      retries.backoff_base_ms === undefined
        ? undefined
        : {
            base_interval: duration(retries.backoff_base_ms),
            max_interval: retries.backoff_max_ms === undefined ? undefined : duration(retries.backoff_max_ms),
          },
  };
}

type HashPolicy = NonNullable<RouteAction['hash_policy']>[number];

/** Hash policies for the ring_hash upstreams among the targets, deduplicated and sorted. */
function hashPolicies(targets: Targets, upstreams: ReadonlyMap<string, Upstream>): HashPolicy[] | undefined {
  // Most routes target no ring-hash upstream: nothing is allocated for them.
  if (!targets.some((target) => upstreams.get(target.upstream)?.hash_key)) return undefined;
  const byKey = new Map<string, HashPolicy>();
  for (const target of targets) {
    const key = upstreams.get(target.upstream)?.hash_key;
    if (!key) continue;
    const policy: HashPolicy = key.header
      ? { header: { header_name: key.header } }
      : key.cookie
        ? { cookie: { name: key.cookie } }
        : { connection_properties: { source_ip: true } };
    byKey.set(JSON.stringify(policy), policy);
  }
  if (byKey.size === 0) return undefined;
  return [...byKey.keys()].sort(compareStrings).map((key) => byKey.get(key)!);
}

function headersToAdd(headers: ReadonlyArray<{ name: string; value: string; append: boolean }> | undefined): HeaderValueOption[] | undefined {
  if (!headers || headers.length === 0) return undefined;
  return headers.map((header) => ({
    header: { key: header.name, value: literalHeaderValue(header.value) },
    append_action: header.append ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD',
  }));
}

/** The route's own removals, then the credential headers a fail-open route drops, each once; undefined when none. */
function requestHeadersToRemove(route: Route): string[] | undefined {
  const own = route.request_headers?.remove ?? [];
  const failOpen = failOpenRemovedHeaders(route);
  // Most routes have neither: no set or copies for them.
  if (own.length === 0 && failOpen.length === 0) return undefined;
  return [...new Set([...own, ...failOpen])];
}

function nonEmpty(items: readonly string[] | undefined): string[] | undefined {
  return items && items.length > 0 ? [...items] : undefined;
}

/** Whether a route gets per-route upstream stats under the gateway's mode (options.ts ROUTE_STATS_MODES). */
export function hasRouteStats(route: Route, mode: RouteStatsMode): boolean {
  if (mode === 'all') return true;
  if (mode === 'off') return false;
  return route.action.split !== undefined || route.action.canary !== undefined;
}
