// Which routes one revision added and removed against the previous one, found
// without visiting every route's content.
//
// The store keeps each kind sorted by name and hands the next revision the same
// frozen objects for everything a commit did not touch, so two revisions' route
// lists differ in a few places and agree, object for object, everywhere else.
// One merge walk comparing identities finds those places; names are compared
// only where the lists differ. The walk also proves the next list sorted (so the
// next call may rely on it); any list that is not gets no diff, and the caller
// translates it in full.
import type { Route } from '../model/index.ts';

export interface RouteDiff {
  /** Routes of the next list that are not (the same object) in the previous one. */
  added: Route[];
  /** Routes of the previous list that are not (the same object) in the next one. */
  removed: Route[];
}

/**
 * `previous` must be strictly sorted by name (a list this function or
 * isStrictlyByName accepted). Undefined when `next` is not strictly sorted.
 */
export function diffSortedRoutes(previous: readonly Route[], next: readonly Route[]): RouteDiff | undefined {
  const added: Route[] = [];
  const removed: Route[] = [];
  let i = 0;
  for (let j = 0; j < next.length; j++) {
    const route = next[j]!;
    // Previous routes named before this one are not in the next list (were it sorted): removed.
    while (i < previous.length && previous[i] !== route && previous[i]!.name < route.name) removed.push(previous[i++]!);
    // A shared route needs no check: it comes after everything walked past, in both lists.
    if (previous[i] === route) {
      i++;
      continue;
    }
    if (j > 0 && !(next[j - 1]!.name < route.name)) return undefined;
    if (previous[i]?.name === route.name) removed.push(previous[i++]!);
    added.push(route);
  }
  for (; i < previous.length; i++) removed.push(previous[i]!);
  return { added, removed };
}

/** True when every route's name is greater than the one before (code-unit order, as the store sorts). */
export function isStrictlyByName(routes: readonly Route[]): boolean {
  for (let j = 1; j < routes.length; j++) if (!(routes[j - 1]!.name < routes[j]!.name)) return false;
  return true;
}
