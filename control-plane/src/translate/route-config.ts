// Encodes the RouteConfiguration from per-route pieces.
//
// Encoding is most of translation's cost, and between two revisions almost every
// route is unchanged. So each Sluice route's Envoy routes are encoded on their own
// and spliced into their virtual hosts as length-delimited fields (protobuf merges
// repeated fields by concatenation), and an optional TranslationCache, owned by
// the caller, keeps those bytes keyed by everything they depend on. The output is
// the same with or without a cache: the cache only skips re-encoding.
import type { RateLimitPolicy, Route, Upstream } from '../model/index.ts';
import { referencedUpstreams, routePolicies } from '../model/index.ts';
import { encode } from '../proto/codec.ts';
import { type RouteContext, envoyRoutes } from './routes.ts';
import { concatBytes, lengthDelimited } from './util.ts';
import { planVirtualHosts } from './vhosts.ts';

/** Field numbers: RouteConfiguration.virtual_hosts and VirtualHost.routes. */
const VIRTUAL_HOSTS_FIELD = 2;
const ROUTES_FIELD = 3;

/** Encoded routes from the previous translation, for reuse. Create one per translation pipeline. */
export interface TranslationCache {
  /** Route name -> its bytes and what they were encoded from. */
  routes: Map<string, CachedRoute>;
  /** The last translation's policies and upstream hash keys (when unchanged, an identical route is a hit at once). */
  inputs?: SharedInputs;
}

interface SharedInputs {
  policies: RateLimitPolicy[];
  hashKeys: Map<string, string>;
}

/**
 * One route's bytes and everything envoyRoutes() read to make them: the route,
 * the filter context, the policies in force on it and the hash keys of the
 * upstreams it targets. (A change to envoyRoutes' inputs must be reflected here.)
 * Unchanged config objects are the same objects from one revision to the next
 * (the store shares and freezes them), so a hit is usually decided by identity;
 * equal content in new objects (a State read back from Postgres) falls back to
 * comparing the canonical key.
 */
interface CachedRoute {
  route: Route;
  contextKey: string;
  policies: RateLimitPolicy[];
  hashKeys: Array<Upstream['hash_key'] | null>;
  key?: string;
  bytes: Uint8Array;
}

export function createTranslationCache(): TranslationCache {
  return { routes: new Map() };
}

function sharedInputsOf(ctx: RouteContext): SharedInputs {
  return {
    policies: [...ctx.policies.values()],
    hashKeys: new Map([...ctx.upstreams.values()].map((u) => [u.name, JSON.stringify(u.hash_key ?? null)])),
  };
}

/** True when no policy object and no upstream hash key changed since `previous`. */
function sameInputs(previous: SharedInputs | undefined, next: SharedInputs): boolean {
  if (!previous || !sameItems(previous.policies, next.policies) || previous.hashKeys.size !== next.hashKeys.size) return false;
  for (const [name, key] of next.hashKeys) if (previous.hashKeys.get(name) !== key) return false;
  return true;
}

export function encodeRouteConfiguration(name: string, routes: readonly Route[], ctx: RouteContext, cache?: TranslationCache): Uint8Array {
  const contextKey = JSON.stringify([ctx.needs, ctx.options.authz !== undefined, ctx.options.routeStats ?? 'all']);
  const byName = new Map<string, Uint8Array>();
  const fresh = new Map<string, CachedRoute>();
  const inputs = cache ? sharedInputsOf(ctx) : undefined;
  // Policies and hash keys as last time: a route that is the same object is a hit outright.
  const inputsUnchanged = cache !== undefined && sameInputs(cache.inputs, inputs!);
  const routeBytes = (route: Route): Uint8Array => {
    let bytes = byName.get(route.name);
    if (bytes) return bytes;
    if (cache) {
      const previous = cache.routes.get(route.name);
      const entry = inputsUnchanged && previous?.route === route && previous.contextKey === contextKey ? previous : cachedRoute(previous, route, ctx, contextKey);
      fresh.set(route.name, entry);
      bytes = entry.bytes;
    } else {
      bytes = encodeEnvoyRoutes(route, ctx);
    }
    byName.set(route.name, bytes);
    return bytes;
  };
  const virtualHosts = planVirtualHosts(routes).map((plan) =>
    concatBytes([encode('envoy.config.route.v3.VirtualHost', { name: plan.name, domains: plan.domains }), ...plan.routes.map(routeBytes)]),
  );
  // Keep only what this translation used, so the cache holds one revision's routes.
  if (cache) {
    cache.routes = fresh;
    cache.inputs = inputs;
  }
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

/** The previous entry when its inputs are unchanged, else the route encoded afresh. */
function cachedRoute(previous: CachedRoute | undefined, route: Route, ctx: RouteContext, contextKey: string): CachedRoute {
  const policies = routePolicies(route, ctx.policies);
  const hashKeys = referencedUpstreams(route).map((name) => ctx.upstreams.get(name)?.hash_key ?? null);
  if (previous && previous.route === route && previous.contextKey === contextKey && sameItems(previous.policies, policies) && sameItems(previous.hashKeys, hashKeys)) {
    return previous;
  }
  const key = JSON.stringify([contextKey, route, policies, hashKeys]);
  if (previous && previous.key === key) return { route, contextKey, policies, hashKeys, key, bytes: previous.bytes };
  return { route, contextKey, policies, hashKeys, key, bytes: encodeEnvoyRoutes(route, ctx) };
}

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}
