// Encodes the RouteConfiguration from per-route pieces.
//
// Encoding is most of translation's cost, and between two revisions almost every
// route is unchanged. So each Sluice route's Envoy routes are encoded on their own
// and spliced into their virtual hosts as length-delimited fields (protobuf merges
// repeated fields by concatenation), and an optional TranslationCache, owned by
// the caller, keeps those bytes keyed by everything they depend on. The output is
// the same with or without a cache: the cache only skips re-encoding.
import type { Route } from '../model/index.ts';
import { referencedUpstreams } from '../model/index.ts';
import { encode } from '../proto/codec.ts';
import { type RouteContext, envoyRoutes } from './routes.ts';
import { concatBytes, lengthDelimited } from './util.ts';
import { planVirtualHosts } from './vhosts.ts';

/** Field numbers: RouteConfiguration.virtual_hosts and VirtualHost.routes. */
const VIRTUAL_HOSTS_FIELD = 2;
const ROUTES_FIELD = 3;

/** Encoded routes from the previous translation, for reuse. Create one per translation pipeline. */
export interface TranslationCache {
  routes: Map<string, Uint8Array>;
}

export function createTranslationCache(): TranslationCache {
  return { routes: new Map() };
}

export function encodeRouteConfiguration(name: string, routes: readonly Route[], ctx: RouteContext, cache?: TranslationCache): Uint8Array {
  const contextKey = JSON.stringify([ctx.needs, ctx.options.authz !== undefined]);
  const fresh = new Map<string, Uint8Array>();
  const byName = new Map<string, Uint8Array>();
  const routeBytes = (route: Route): Uint8Array => {
    let bytes = byName.get(route.name);
    if (bytes) return bytes;
    const key = cache ? routeCacheKey(route, ctx, contextKey) : '';
    bytes = cache?.routes.get(key) ?? encodeEnvoyRoutes(route, ctx);
    if (cache) fresh.set(key, bytes);
    byName.set(route.name, bytes);
    return bytes;
  };
  const virtualHosts = planVirtualHosts(routes).map((plan) =>
    concatBytes([encode('envoy.config.route.v3.VirtualHost', { name: plan.name, domains: plan.domains }), ...plan.routes.map(routeBytes)]),
  );
  // Keep only what this translation used, so the cache holds one revision's routes.
  if (cache) cache.routes = fresh;
  return concatBytes([
    // Host:port and Host match the same virtual host.
    encode('envoy.config.route.v3.RouteConfiguration', { name, ignore_port_in_host_matching: true }),
    ...virtualHosts.map((bytes) => lengthDelimited(VIRTUAL_HOSTS_FIELD, bytes)),
  ]);
}

/** A Sluice route's Envoy routes, each framed as a VirtualHost.routes field. */
function encodeEnvoyRoutes(route: Route, ctx: RouteContext): Uint8Array {
  return concatBytes(envoyRoutes(route, ctx).map((r) => lengthDelimited(ROUTES_FIELD, encode('envoy.config.route.v3.Route', r))));
}

/**
 * Everything envoyRoutes() reads for this route: the route itself, the filter
 * chain, the policies it names and the hash keys of the upstreams it targets.
 * (A change to envoyRoutes' inputs must be reflected here.)
 */
function routeCacheKey(route: Route, ctx: RouteContext, contextKey: string): string {
  const policies = route.rate_limits.map((name) => ctx.policies.get(name) ?? null);
  const hashKeys = referencedUpstreams(route).map((name) => ctx.upstreams.get(name)?.hash_key ?? null);
  return JSON.stringify([contextKey, route, policies, hashKeys]);
}
