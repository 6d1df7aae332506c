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
import { compareStrings } from './util.ts';

/** A virtual host before encoding: its domains and its Sluice routes in match order. */
export interface VirtualHostPlan {
  name: string;
  domains: string[];
  routes: Route[];
}

export function planVirtualHosts(routes: readonly Route[]): VirtualHostPlan[] {
  const groups = new Map<string, VirtualHostPlan>();
  for (const [domain, listed] of [...routesByDomain(routes)].sort((a, b) => compareStrings(a[0], b[0]))) {
    const ordered = [...listed].sort(compareRoutes);
    const key = ordered.map((route) => route.name).join('\n');
    const group = groups.get(key);
    if (group) group.domains.push(domain);
    else groups.set(key, { name: '', domains: [domain], routes: ordered });
  }
  const plans = [...groups.values()].map((plan) => ({ ...plan, name: virtualHostName(plan.domains) }));
  return plans.sort((a, b) => lastResortRank(a) - lastResortRank(b) || compareStrings(a.name, b.name));
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
