// The resources the xDS server moves. xds/ knows type URLs, names and versions;
// it never looks inside a resource (that is translate/'s business).
import { createHash } from 'node:crypto';

export const TYPE = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  /**
   * Rate-limit config (Sluice's own proto, envoyproxy/ratelimit's wire format):
   * asked for by rate-limit services, never by Envoys. Independent of the four
   * Envoy types: no make-before-break ordering, and not needed for an Envoy's sync.
   */
  rateLimitConfig: 'type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig',
} as const;

export type TypeUrl = (typeof TYPE)[keyof typeof TYPE];

/**
 * Make-before-break order: clusters, then their endpoints, then listeners and
 * the routes that point at them. Pushes always go out in this order. The
 * rate-limit config comes last and waits for nothing (see stream-state.ts).
 */
export const PUSH_ORDER: readonly TypeUrl[] = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route, TYPE.rateLimitConfig];

/** The types Envoys consume (an Envoy's sync is judged on these). */
export const ENVOY_TYPES: ReadonlySet<TypeUrl> = new Set([TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route]);

/**
 * Types subscribed to as a wildcard (all resources) by an empty first request;
 * the others are named. envoyproxy/ratelimit asks for every RateLimitConfig this way.
 */
export const WILDCARD_TYPES: ReadonlySet<string> = new Set([TYPE.cluster, TYPE.listener, TYPE.rateLimitConfig]);

export function isKnownType(typeUrl: string): typeUrl is TypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(typeUrl);
}

export interface XdsResource {
  typeUrl: string;
  name: string;
  /** Content hash of `value`: equal versions mean equal bytes. */
  version: string;
  /** The encoded Envoy message. Empty for a resource known only by version (delta resume). */
  value: Uint8Array;
}

/** Resources of one type by name. */
export type ResourceSet = ReadonlyMap<string, XdsResource>;

export const EMPTY_SET: ResourceSet = new Map();

const setVersions = new WeakMap<ResourceSet, string>();

/** A version for a whole set: a hash of its sorted names and versions. */
export function setVersion(set: ResourceSet): string {
  let version = setVersions.get(set);
  if (version === undefined) {
    const hash = createHash('sha256');
    for (const name of [...set.keys()].sort()) hash.update(`${name}\0${set.get(name)!.version}\n`);
    version = hash.digest('hex').slice(0, 16);
    setVersions.set(set, version);
  }
  return version;
}

export function sameSet(a: ResourceSet, b: ResourceSet): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [name, resource] of a) {
    if (b.get(name)?.version !== resource.version) return false;
  }
  return true;
}

/** Only the named resources (an undefined filter keeps all: a wildcard subscription). */
export function filterSet(set: ResourceSet, names: ReadonlySet<string> | undefined): ResourceSet {
  if (names === undefined) return set;
  const out = new Map<string, XdsResource>();
  for (const name of names) {
    const resource = set.get(name);
    if (resource) out.set(name, resource);
  }
  return out;
}

/** `next`, plus whatever `previous` had that `next` lacks: additions without removals. */
export function unionSet(previous: ResourceSet, next: ResourceSet): ResourceSet {
  let out: Map<string, XdsResource> | undefined;
  for (const [name, resource] of previous) {
    if (next.has(name)) continue;
    out ??= new Map(next);
    out.set(name, resource);
  }
  return out ?? next;
}
