// State -> Envoy resources. Pure and deterministic: the same State and options give
// byte-identical resources (everything is sorted explicitly; map keys are inserted
// in sorted order), each versioned by a hash of its bytes, so a change to one
// object changes only the resources it shows up in.
import type { RateLimitPolicy, State, Upstream } from '../model/index.ts';
import { type MessageName, encode, typeUrl } from '../proto/codec.ts';
import type { Cluster } from '../proto/codec.ts';
import { serviceCluster, upstreamCluster, upstreamLoadAssignment, usesEds } from './clusters.ts';
import { type FilterContext, type FilterNeeds, type NeedCounts, addNeeds, countNeeds, httpFilters, needsOf, strippedHeaders } from './filters.ts';
import { type RouteDiff, diffSortedRoutes, isStrictlyByName } from './route-diff.ts';
import { accessLogs } from './access-log.ts';
import { httpListener } from './listener.ts';
import { routeConfigName } from './names.ts';
import { type TranslateOptions, edgeOptions } from './options.ts';
import { type TranslationCache, encodeRouteConfiguration } from './route-config.ts';
import type { RouteContext } from './routes.ts';
import { traceContext } from './tracing.ts';
import { RATELIMIT_CONFIG_MESSAGE, rateLimitConfigs } from './ratelimit-config.ts';
import { compareStrings, contentVersion, sameItems, sortedBy } from './util.ts';

export { type TranslateOptions, type ServiceEndpoint, type EdgeOptions, type AccessLogOptions, type TracingOptions, type RouteStatsMode, EDGE_DEFAULTS, ROUTE_STATS_MODES } from './options.ts';
export { ACCESS_LOG_FIELDS } from './access-log.ts';
export { type TranslationCache, createTranslationCache } from './route-config.ts';

/** One encoded Envoy resource (same shape as xds/'s XdsResource). */
export interface XdsResource {
  typeUrl: string;
  name: string;
  /** First 16 hex chars of the SHA-256 of `value`. */
  version: string;
  value: Uint8Array;
}

export interface EnvoyResources {
  listeners: XdsResource[];
  routes: XdsResource[];
  clusters: XdsResource[];
  endpoints: XdsResource[];
  /**
   * Rate-limit config (ratelimit.config.ratelimit.v3.RateLimitConfig), one per
   * domain; empty without options.ratelimit. Served on the ADS stream to rate-limit
   * services (envoyproxy/ratelimit's GRPC_XDS_SOTW); Envoys never ask for it.
   */
  ratelimitConfigs: XdsResource[];
}

/**
 * Expects a State that passed validateState (unique names, known references).
 * Pass the same `cache` to successive calls (one pipeline) to skip re-encoding
 * unchanged routes; the result is identical with or without it.
 */
export function translate(state: State, options: TranslateOptions, cache?: TranslationCache): EnvoyResources {
  const upstreams = new Map<string, Upstream>(state.upstreams.map((u) => [u.name, u]));
  const policies = new Map<string, RateLimitPolicy>(state.rate_limit_policies.map((p) => [p.name, p]));
  // Taken out while this translation runs: one that throws leaves no half-updated memo behind.
  const memo = cache?.needs;
  if (cache) cache.needs = undefined;
  const diff = memo && memo.options === options && sameItems(memo.policies, state.rate_limit_policies) ? diffSortedRoutes(memo.routes, state.routes) : undefined;
  const counts = diff ? adjustedCounts(memo!.counts, diff, options, policies) : countNeeds(state.routes, options, policies);
  const needs = needsOf(counts);
  const filterContext: FilterContext = { needs, options, policies, anys: new Map() };
  const routeContext: RouteContext = { ...filterContext, upstreams, encodedActions: new Map() };
  const sortedUpstreams = sortedBy(state.upstreams, (u) => u.name);

  const routesName = routeConfigName(options.listenerPort);
  const routeConfig = encodeRouteConfiguration(routesName, state.routes, routeContext, cache, diff);
  const resources = {
    listeners: [listenerResource(state, needs, options, cache)],
    routes: [encoded(typeUrl('envoy.config.route.v3.RouteConfiguration'), routesName, routeConfig)],
    clusters: byName(
      [...sortedUpstreams.map((u) => upstreamCluster(u, options)), ...serviceClusters(options)].map((cluster) =>
        resource('envoy.config.cluster.v3.Cluster', cluster.name!, cluster),
      ),
    ),
    endpoints: sortedUpstreams
      .filter(usesEds)
      .map((u) => upstreamLoadAssignment(u))
      .map((cla) => resource('envoy.config.endpoint.v3.ClusterLoadAssignment', cla.cluster_name!, cla)),
    ratelimitConfigs: options.ratelimit
      ? rateLimitConfigs(state, options.ratelimit.domain).map((config) => resource(RATELIMIT_CONFIG_MESSAGE, config.name!, config))
      : [],
  };
  // The next translation diffs against these routes when they are in the store's order.
  if (cache && (diff || isStrictlyByName(state.routes))) cache.needs = { routes: state.routes, options, policies: state.rate_limit_policies, counts };
  return resources;
}

/** `counts` less the removed routes' needs plus the added ones' (same options and policies as when counted). */
function adjustedCounts(counts: NeedCounts, diff: RouteDiff, options: TranslateOptions, policies: ReadonlyMap<string, RateLimitPolicy>): NeedCounts {
  const next = { ...counts };
  for (const route of diff.removed) addNeeds(next, route, options, policies, -1);
  for (const route of diff.added) addNeeds(next, route, options, policies, 1);
  return next;
}

/**
 * The listener, reused from the cache when built from the same options object
 * and the same needs and stripped headers (everything it reads from a State).
 */
function listenerResource(state: State, needs: FilterNeeds, options: TranslateOptions, cache: TranslationCache | undefined): XdsResource {
  const key = JSON.stringify([needs, strippedHeaders(state)]);
  const memo = cache?.listener;
  if (memo && memo.options === options && memo.key === key) return memo.resource;
  const listener = httpListener(
    options.listenerAddress ?? '0.0.0.0',
    options.listenerPort,
    httpFilters(state, needs, options),
    edgeOptions(options.edge),
    { access_log: accessLogs(options.accessLog), ...traceContext(options.tracing) },
  );
  const built = resource('envoy.config.listener.v3.Listener', listener.name!, listener);
  if (cache) cache.listener = { options, key, resource: built };
  return built;
}

/**
 * Clusters for the authz and rate-limit services and the OTLP collector, emitted whenever configured so
 * they are in place before any route needs them. One cluster when both name the
 * same cluster at the same address; a clash is a deployment error.
 */
function serviceClusters(options: TranslateOptions): Cluster[] {
  const services = [options.authz, options.ratelimit, options.tracing?.otlpCollector].filter((s) => s !== undefined);
  const byName = new Map<string, { host: string; port: number }>();
  for (const service of services) {
    const seen = byName.get(service.clusterName);
    if (seen && (seen.host !== service.host || seen.port !== service.port)) {
      throw new Error(`cluster '${service.clusterName}' is configured with two addresses`);
    }
    byName.set(service.clusterName, { host: service.host, port: service.port });
  }
  return [...byName.entries()].map(([name, { host, port }]) => serviceCluster(name, host, port));
}

function resource<N extends MessageName>(name: N, resourceName: string, message: Parameters<typeof encode<N>>[1]): XdsResource {
  return encoded(typeUrl(name), resourceName, encode(name, message));
}

function encoded(url: string, name: string, value: Uint8Array): XdsResource {
  return { typeUrl: url, name, version: contentVersion(value), value };
}

function byName(resources: XdsResource[]): XdsResource[] {
  return resources.sort((a, b) => compareStrings(a.name, b.name));
}
