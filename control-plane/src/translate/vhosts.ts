// Routes -> virtual hosts.
//
// Envoy requires every domain to appear in one virtual host only, and sends a
// request to the single most specific virtual host for its Host (exact, then the
// longest `*.suffix`, then `*`); only that virtual host's routes are searched.
// Sluice keeps those semantics (the most specific host pattern owns the request;
// `*` is the last resort) and makes the domains unique:
//
//   - every distinct host pattern is a domain, holding the routes that list it;
//   - domains holding the same routes share one virtual host, named from its
//     sorted domains (a route listing [a, b] next to one listing [a] gives a
//     virtual host {a} with both routes and one {b} with the first);
//   - routes are ordered by order.ts; the virtual host holding `*` comes last.
//
// Routes are never copied into the virtual hosts of other patterns, so the output
// grows with routes x their own hosts, not with routes x all hosts.
import { createHash } from 'node:crypto';
import type { Route } from '../model/index.ts';
import { compareRoutes } from './order.ts';
import type { RouteDiff } from './route-diff.ts';
import { compareStrings } from './util.ts';

/** A virtual host before encoding: its domains and its Sluice routes in match order. */
export interface VirtualHostPlan {
  name: string;
  domains: string[];
  routes: readonly Route[];
}

/**
 * Each host pattern's routes in match order from the previous plan. Passed to
 * successive calls (TranslationCache), it lets a one-route change re-order one
 * route instead of sorting every route again; the plan is the same without it.
 */
export interface VirtualHostMemo {
  orders?: Map<string, readonly Route[]>;
  /** Each order's route names joined (what groups domains), kept while the order is the same array. */
  keys?: WeakMap<readonly Route[], string>;
}

/**
 * With `diff` (the routes added and removed since the plan in `memo`), only the
 * host patterns those routes list are re-ordered, each by binary search; the
 * plan is the same as without it.
 */
export function planVirtualHosts(routes: readonly Route[], memo?: VirtualHostMemo, diff?: RouteDiff): VirtualHostPlan[] {
  const orders = (diff && memo?.orders && changedOrders(memo.orders, diff)) || allOrders(routes, memo?.orders);
  if (memo) memo.orders = orders;
  const domains = [...orders.keys()].sort(compareStrings);
  const keys = memo ? (memo.keys ??= new WeakMap()) : undefined;
  const groups = new Map<string, VirtualHostPlan>();
  for (const domain of domains) {
    const ordered = orders.get(domain)!;
    // Domains holding the same routes share a virtual host (one domain: nothing to compare).
    const key = domains.length === 1 ? '' : groupKey(ordered, keys);
    const group = groups.get(key);
    if (group) group.domains.push(domain);
    else groups.set(key, { name: '', domains: [domain], routes: ordered });
  }
  const plans = [...groups.values()].map((plan) => ({ ...plan, name: virtualHostName(plan.domains) }));
  return plans.sort((a, b) => lastResortRank(a) - lastResortRank(b) || compareStrings(a.name, b.name));
}

function groupKey(ordered: readonly Route[], keys: WeakMap<readonly Route[], string> | undefined): string {
  let key = keys?.get(ordered);
  if (key === undefined) {
    key = ordered.map((route) => route.name).join('\n');
    keys?.set(ordered, key);
  }
  return key;
}

/** Every host pattern's routes in match order (reusing `previous` orders where it can). */
function allOrders(routes: readonly Route[], previous: Map<string, readonly Route[]> | undefined): Map<string, readonly Route[]> {
  const orders = new Map<string, readonly Route[]>();
  for (const [domain, listed] of routesByDomain(routes)) orders.set(domain, orderedRoutes(listed, previous?.get(domain)));
  return orders;
}

/**
 * `previous` with the diff applied: the host patterns no added or removed route
 * lists keep their order arrays as they are. Undefined (order everything) when a
 * route lists a host twice, or a removed route is not where its order says.
 */
function changedOrders(previous: Map<string, readonly Route[]>, diff: RouteDiff): Map<string, readonly Route[]> | undefined {
  const removed = routesByDomain(diff.removed);
  const added = routesByDomain(diff.added);
  if ([...diff.removed, ...diff.added].some((route) => new Set(route.hosts).size !== route.hosts.length)) return undefined;
  const orders = new Map(previous);
  for (const domain of new Set([...removed.keys(), ...added.keys()])) {
    const kept = withoutRoutes(previous.get(domain) ?? [], removed.get(domain) ?? []);
    if (kept === undefined) return undefined;
    const joining = added.get(domain);
    const order = joining ? insertOrdered(kept, joining.sort(compareRoutes)) : kept;
    if (order.length === 0) orders.delete(domain);
    else orders.set(domain, order);
  }
  return orders;
}

/** `order` without `gone` (each found by binary search: the order is total); undefined if one is missing. */
function withoutRoutes(order: readonly Route[], gone: readonly Route[]): readonly Route[] | undefined {
  if (gone.length === 0) return order;
  const at = new Set<number>();
  for (const route of gone) {
    const low = placeOf(order, route, 0);
    if (order[low] !== route) return undefined;
    at.add(low);
  }
  return order.filter((_, index) => !at.has(index));
}

/**
 * `listed` in match order. With the previous order of the same domain, the
 * routes kept from it (the same objects, so the same place in the order) stay
 * in that order and only the new ones are sorted and merged in.
 */
function orderedRoutes(listed: readonly Route[], previous: readonly Route[] | undefined): readonly Route[] {
  if (!previous) return [...listed].sort(compareRoutes);
  const added = new Set(listed);
  if (added.size !== listed.length) return [...listed].sort(compareRoutes); // a route listing a host twice: as it always was
  // Taking the kept ones out of the set leaves the new ones in it.
  const kept = previous.filter((route) => added.delete(route));
  return added.size === 0 ? kept : insertOrdered(kept, [...added].sort(compareRoutes));
}

/**
 * `added` (in match order) put into `kept` (in match order): each one's place
 * found by binary search from the previous one's, so a few new routes cost a
 * few comparisons each, not one per kept route.
 */
function insertOrdered(kept: readonly Route[], added: readonly Route[]): Route[] {
  const out: Route[] = [];
  let from = 0;
  for (const route of added) {
    const low = placeOf(kept, route, from);
    for (let i = from; i < low; i++) out.push(kept[i]!);
    out.push(route);
    from = low;
  }
  for (let i = from; i < kept.length; i++) out.push(kept[i]!);
  return out;
}

/** The first index at or after `from` whose route does not come before `route` in match order (binary search). */
function placeOf(order: readonly Route[], route: Route, from: number): number {
  let low = from;
  let high = order.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareRoutes(order[middle]!, route) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

function routesByDomain(routes: readonly Route[]): Map<string, Route[]> {
  const map = new Map<string, Route[]>();
  for (const route of routes) {
    for (const host of route.hosts) {
      const list = map.get(host);
      if (list) list.push(route);
      else map.set(host, [route]);
    }
  }
  return map;
}

function lastResortRank(host: { domains: string[] }): number {
  return host.domains.includes('*') ? 1 : 0;
}

/** Readable and stable: the sorted domains, shortened with a hash when long. */
export function virtualHostName(domains: readonly string[]): string {
  const joined = domains.join(',');
  if (joined.length <= 120) return joined;
  const hash = createHash('sha256').update(joined).digest('hex').slice(0, 12);
  return `${joined.slice(0, 100)}..${hash}`;
}
