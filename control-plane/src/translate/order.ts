// The order of routes inside a virtual host. Envoy takes the first route that
// matches, so this order is the routing semantics. Compared in turn:
//
//   1. priority, higher first (the operator's explicit override);
//   2. path kind: exact, then regex, then prefix;
//   3. path length, longer first (for exact and prefix; longer = more specific;
//      regexes keep their relative order by the next rules);
//   4. case: a case-sensitive path before the same path with ignore_case (the
//      sensitive one is narrower);
//   5. number of conditions (methods + header + query matchers), more first, so a
//      narrower route is never shadowed by a broader one on the same path;
//   6. name (unique), so the order is total and never depends on input order.
import type { Route } from '../model/index.ts';
import { compareStrings } from './util.ts';

const PATH_KIND_RANK = { exact: 0, regex: 1, prefix: 2 } as const;

function pathKind(route: Route): keyof typeof PATH_KIND_RANK {
  const { path } = route.match;
  return path.exact !== undefined ? 'exact' : path.regex !== undefined ? 'regex' : 'prefix';
}

function pathLength(route: Route): number {
  const { path } = route.match;
  return (path.exact ?? path.prefix ?? '').length;
}

function ignoresCase(route: Route): number {
  return route.match.path.ignore_case === true ? 1 : 0;
}

function conditionCount(route: Route): number {
  const { methods, headers, query } = route.match;
  return (methods ? 1 : 0) + (headers?.length ?? 0) + (query?.length ?? 0);
}

export function compareRoutes(a: Route, b: Route): number {
  return (
    b.priority - a.priority ||
    PATH_KIND_RANK[pathKind(a)] - PATH_KIND_RANK[pathKind(b)] ||
    pathLength(b) - pathLength(a) ||
    ignoresCase(a) - ignoresCase(b) ||
    conditionCount(b) - conditionCount(a) ||
    compareStrings(a.name, b.name)
  );
}
