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
import { type EnvoyRoute, type RouteContext, envoyRoutes } from './routes.ts';
import { concatBytes, fieldHeader, lengthDelimited, sameItems } from './util.ts';
import { type VirtualHostMemo, planVirtualHosts } from './vhosts.ts';
import type { ListenerMemo } from './listener.ts';
import type { NeedCounts } from './filters.ts';
import type { RouteDiff } from './route-diff.ts';

/** Field numbers: RouteConfiguration.virtual_hosts and VirtualHost.routes. */
const VIRTUAL_HOSTS_FIELD = 2;
const ROUTES_FIELD = 3;

/** Encoded routes from the previous translation, for reuse. Create one per translation pipeline. */
export interface TranslationCache {
  /** Route name -> its bytes and what they were encoded from. */
  routes: Map<string, CachedRoute>;
  /** The last translation's policies and upstream hash keys (when unchanged, an identical route is a hit at once). */
  inputs?: SharedInputs;
  /** The last translation's filter context (needs, authz on, stats mode) as JSON. */
  contextKey?: string;
  /** The last translation's route order per host pattern (vhosts.ts). */
  virtualHosts?: VirtualHostMemo;
  /** The last translation's virtual hosts by first domain: their routes and those routes' bytes at the same index. */
  hosts?: Map<string, HostBytes>;
  /** The last translation's listener (index.ts). */
  listener?: ListenerMemo;
  /** The last translation's routes when sorted by name (the store's order), and what they need of the chain (index.ts). */
  needs?: NeedsMemo;
}

export interface NeedsMemo {
  routes: readonly Route[];
  options: object;
  policies: RateLimitPolicy[];
  counts: NeedCounts;
}

interface HostBytes {
  routes: readonly Route[];
  bytes: Uint8Array[];
  /** The routes' bytes joined: the virtual host's routes fields. */
  body: Uint8Array;
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
 * comparing them as JSON would (sameJson). No serialized key is kept: at 10,000
 * routes such keys held ~2.6 MiB and cost a stringify per miss.
 */
interface CachedRoute {
  route: Route;
  contextKey: string;
  policies: RateLimitPolicy[];
  hashKeys: Array<Upstream['hash_key'] | null>;
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

/**
 * `diff`, when given, is what changed in `routes` since the cache's last
 * translation (route-diff.ts). With the same policies, hash keys and filter
 * context as then, only the added routes are looked at: the unchanged ones keep
 * their bytes and places. The output is the same with or without either.
 */
export function encodeRouteConfiguration(name: string, routes: readonly Route[], ctx: RouteContext, cache?: TranslationCache, diff?: RouteDiff): Uint8Array {
  const contextKey = JSON.stringify([ctx.needs, ctx.options.authz !== undefined, ctx.options.routeStats ?? 'all']);
  const inputs = cache ? sharedInputsOf(ctx) : undefined;
  // Policies and hash keys as last time: a route that is the same object is a hit outright.
  const inputsUnchanged = cache !== undefined && sameInputs(cache.inputs, inputs!);
  const changesOnly = cache !== undefined && diff !== undefined && inputsUnchanged && cache.contextKey === contextKey;
  const routeBytes = !cache ? uncachedBytes(ctx) : changesOnly ? changedBytes(cache, diff, ctx, contextKey) : cachedBytes(cache, inputsUnchanged, ctx, contextKey);
  if (cache) cache.virtualHosts ??= {};
  const plans = planVirtualHosts(routes, cache?.virtualHosts, changesOnly ? diff : undefined);
  const hosts = new Map<string, HostBytes>();
  const removed = new Set(changesOnly ? diff.removed : []);
  // Each virtual host as its pieces (its own fields, then its routes' bytes), framed below without joining them first.
  const virtualHosts = plans.map((plan) => {
    const previous = changesOnly ? cache.hosts?.get(plan.domains[0]!) : undefined;
    const host = previous ? keptHost(previous, plan.routes, removed, routeBytes) : newHost(plan.routes, routeBytes);
    hosts.set(plan.domains[0]!, host);
    return [encode('envoy.config.route.v3.VirtualHost', { name: plan.name, domains: plan.domains }), host.body];
  });
  if (cache) {
    cache.inputs = inputs;
    cache.contextKey = contextKey;
    cache.hosts = hosts;
  }
  // One copy into the result: a ~300 KB table copied three times cost more than encoding the changed route.
  return concatBytes([
    // Host:port and Host match the same virtual host.
    encode('envoy.config.route.v3.RouteConfiguration', { name, ignore_port_in_host_matching: true }),
    ...virtualHosts.flatMap((pieces) => [fieldHeader(VIRTUAL_HOSTS_FIELD, pieces.reduce((sum, piece) => sum + piece.length, 0)), ...pieces]),
  ]);
}

type RouteBytes = (route: Route) => Uint8Array;

function uncachedBytes(ctx: RouteContext): RouteBytes {
  const byName = new Map<string, Uint8Array>();
  return (route) => {
    let bytes = byName.get(route.name);
    if (!bytes) byName.set(route.name, (bytes = encodeEnvoyRoutes(route, ctx)));
    return bytes;
  };
}

/** Every route through the cache; the cache ends up holding exactly this translation's routes. */
function cachedBytes(cache: TranslationCache, inputsUnchanged: boolean, ctx: RouteContext, contextKey: string): RouteBytes {
  // `fresh` doubles as this translation's record of routes done (a route can sit in several virtual hosts).
  const fresh = new Map<string, CachedRoute>();
  const previousRoutes = cache.routes;
  // Keep only what this translation uses, so the cache holds one revision's routes.
  cache.routes = fresh;
  return (route) => {
    const done = fresh.get(route.name);
    if (done) return done.bytes;
    const previous = previousRoutes.get(route.name);
    const entry = inputsUnchanged && previous?.route === route && previous.contextKey === contextKey ? previous : cachedRoute(previous, route, ctx, contextKey);
    fresh.set(route.name, entry);
    return entry.bytes;
  };
}

/**
 * Only the diff's routes through the cache (the cache's other entries are
 * still exact: same objects, same inputs); the cache is updated in place.
 */
function changedBytes(cache: TranslationCache, diff: RouteDiff, ctx: RouteContext, contextKey: string): RouteBytes {
  const entries = new Map(diff.added.map((route) => [route, cachedRoute(cache.routes.get(route.name), route, ctx, contextKey)]));
  for (const route of diff.removed) cache.routes.delete(route.name);
  for (const [route, entry] of entries) cache.routes.set(route.name, entry);
  return (route) => {
    const entry = entries.get(route) ?? cache.routes.get(route.name);
    if (entry?.route === route && entry.contextKey === contextKey) return entry.bytes;
    // Not expected (every unchanged route has its entry); the cache path keeps it exact anyway.
    const made = cachedRoute(entry, route, ctx, contextKey);
    cache.routes.set(route.name, made);
    return made.bytes;
  };
}

function newHost(routes: readonly Route[], routeBytes: RouteBytes): HostBytes {
  const bytes = routes.map(routeBytes);
  return { routes, bytes, body: concatBytes(bytes) };
}

/**
 * A virtual host's route bytes in `routes` order, taken from the previous
 * translation's where the route is the same object: the previous order less
 * the removed routes is the new order less the added ones, so one walk pairs
 * them. The body is joined from runs of the previous body (a copy per run, not
 * per route: ten thousand small copies cost more than the rest of a change).
 */
function keptHost(previous: HostBytes, routes: readonly Route[], removed: ReadonlySet<Route>, routeBytes: RouteBytes): HostBytes {
  if (previous.routes === routes) return previous;
  const bytes = new Array<Uint8Array>(routes.length);
  const body = new BodyRuns(previous.body);
  const old = previous.routes;
  let i = 0;
  for (let j = 0; j < routes.length; j++) {
    const route = routes[j]!;
    while (i < old.length && old[i] !== route && removed.has(old[i]!)) body.skip(previous.bytes[i++]!.length);
    if (old[i] === route) {
      bytes[j] = previous.bytes[i++]!;
      body.keep(bytes[j]!.length);
    } else {
      bytes[j] = routeBytes(route);
      body.insert(bytes[j]!);
    }
  }
  return { routes, bytes, body: body.join() };
}

/** A new body as runs of an old one (kept or skipped, in order) and inserted pieces. */
class BodyRuns {
  private readonly parts: Uint8Array[] = [];
  /** Where the current run of kept bytes starts in the old body, and where the walk is. */
  private runStart = 0;
  private at = 0;

  constructor(private readonly old: Uint8Array) {}

  keep(length: number): void {
    this.at += length;
  }

  skip(length: number): void {
    this.endRun();
    this.at += length;
    this.runStart = this.at;
  }

  insert(piece: Uint8Array): void {
    this.endRun();
    this.parts.push(piece);
  }

  join(): Uint8Array {
    this.endRun();
    return concatBytes(this.parts);
  }

  private endRun(): void {
    if (this.at > this.runStart) this.parts.push(this.old.subarray(this.runStart, this.at));
    this.runStart = this.at;
  }
}

/** A Sluice route's Envoy routes, each framed as a VirtualHost.routes field. */
function encodeEnvoyRoutes(route: Route, ctx: RouteContext): Uint8Array {
  return concatBytes(envoyRoutes(route, ctx).map((r) => lengthDelimited(ROUTES_FIELD, encodeRoute(r, ctx.encodedActions))));
}

/**
 * One Envoy route's bytes: its match, its RouteAction and its other fields
 * encoded apart and joined. Those are fields 1, 2 and higher numbers, so the
 * join is what one encode of the whole route writes (protobufjs writes fields
 * in number order). Thousands of routes share a few actions (the same
 * upstream): an action is encoded once per translation (`actions`, keyed by
 * its JSON), and RouteAction's converter, too big for V8 to optimise, was
 * half the cost of encoding a route.
 */
export function encodeRoute(envoyRoute: EnvoyRoute, actions: Map<string, Uint8Array>): Uint8Array {
  const { match, route: action, ...rest } = envoyRoute;
  const pieces = [encode('envoy.config.route.v3.Route', { match })];
  if (action) {
    const key = JSON.stringify(action);
    let bytes = actions.get(key);
    if (!bytes) actions.set(key, (bytes = encode('envoy.config.route.v3.Route', { route: action })));
    pieces.push(bytes);
  }
  pieces.push(encode('envoy.config.route.v3.Route', rest));
  return concatBytes(pieces);
}

/** The previous entry when its inputs are unchanged, else the route encoded afresh. */
function cachedRoute(previous: CachedRoute | undefined, route: Route, ctx: RouteContext, contextKey: string): CachedRoute {
  const policies = routePolicies(route, ctx.policies);
  const hashKeys = referencedUpstreams(route).map((name) => ctx.upstreams.get(name)?.hash_key ?? null);
  if (previous && previous.route === route && previous.contextKey === contextKey && sameItems(previous.policies, policies) && sameItems(previous.hashKeys, hashKeys)) {
    return previous;
  }
  const sameContent = previous !== undefined && previous.contextKey === contextKey && sameJson(previous.route, route) && sameJson(previous.policies, policies) && sameJson(previous.hashKeys, hashKeys);
  return { route, contextKey, policies, hashKeys, bytes: sameContent ? previous.bytes : encodeEnvoyRoutes(route, ctx) };
}

/**
 * True when JSON.stringify(a) === JSON.stringify(b), without building either
 * string: the same members in the same order (those JSON drops, undefined and
 * functions, ignored), an array's holes and undefineds as null, non-finite
 * numbers as null. Config objects are JSON-shaped (parsed, then validated).
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ja = jsonScalar(a);
  const jb = jsonScalar(b);
  if (ja !== OBJECT || jb !== OBJECT) return ja === jb;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    if (a.length !== other.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(arrayItem(a[i]), arrayItem(other[i]))) return false;
    return true;
  }
  const ka = jsonKeys(a as Record<string, unknown>);
  const kb = jsonKeys(b as Record<string, unknown>);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i] || !sameJson((a as Record<string, unknown>)[ka[i]!], (b as Record<string, unknown>)[kb[i]!])) return false;
  }
  return true;
}

/** Marks a value JSON writes as an object or array (compared member by member). */
const OBJECT = Symbol('object');

/** What JSON.stringify writes for a non-object value (undefined when it omits it); OBJECT for objects and arrays. */
function jsonScalar(value: unknown): string | number | boolean | null | undefined | typeof OBJECT {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'object') return typeof (value as { toJSON?: unknown }).toJSON === 'function' ? JSON.stringify(value) : OBJECT;
  return undefined; // undefined, functions, symbols (bigint throws in JSON; never in config)
}

/** In an array JSON writes undefined and functions as null. */
function arrayItem(value: unknown): unknown {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol' ? null : value;
}

/** The members JSON.stringify writes, in its order. */
function jsonKeys(object: Record<string, unknown>): string[] {
  return Object.keys(object).filter((k) => jsonScalar(object[k]) !== undefined);
}
