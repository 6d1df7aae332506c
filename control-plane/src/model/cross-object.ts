// The rules that span objects (references, uniqueness, ambiguity), two ways:
//
//   validateState(state)                      every object, O(config)
//   validateChange(index, next, changes)      only what a change can affect, O(change)
//
// Both run the same per-object checks and give the same issues in the same
// order; test/unit/model-incremental.test.ts holds them equal on random
// configs and change sequences. validateChange rests on one assumption: the
// config before the change was valid (the store only ever commits valid
// configs). A change can then only break
//   - the objects it writes;
//   - routes and credentials that reference an object it writes or deletes
//     (and every `jwt` route when the last JWT provider goes);
//   - routes sharing a matcher key, and credentials sharing a (provider,
//     subject), with an object it writes or deletes (ambiguity is reported on
//     the later one, which may be an object the change did not touch).
// A ValidationIndex knows those reverse links, so nothing else is visited.
import type { Issue } from './common.ts';
import type { Credential } from './consumer.ts';
import { type HeaderMatch, type QueryMatch, type Route, referencedUpstreams } from './route.ts';
import { KINDS, type Kind, type State } from './state.ts';

/** One object written or deleted: before is absent on create, after on delete. */
export interface ObjectChange {
  kind: Kind;
  name: string;
  before?: { name: string };
  after?: { name: string };
}

/** What a reference check needs to know about the names of one kind. */
interface Names {
  has(name: string): boolean;
  readonly size: number;
}

// ---- the per-object checks both validators share ------------------------------

type At = (...path: (string | number)[]) => (string | number)[];

function routeReferenceIssues(route: Route, upstreams: Names, policies: Names, providers: Names, at: At): Issue[] {
  const issues: Issue[] = [];
  const needUpstream = (name: string, path: (string | number)[]) => {
    if (!upstreams.has(name)) issues.push({ path, message: `unknown upstream '${name}'` });
  };
  const { action } = route;
  if (action.upstream !== undefined) needUpstream(action.upstream, at('action', 'upstream'));
  action.split?.forEach((entry, i) => needUpstream(entry.upstream, at('action', 'split', i, 'upstream')));
  if (action.split) {
    const total = action.split.reduce((sum, entry) => sum + entry.weight, 0);
    if (total !== 100) issues.push({ path: at('action', 'split'), message: `split weights must sum to 100 (got ${total})` });
  }
  if (action.canary) {
    needUpstream(action.canary.primary, at('action', 'canary', 'primary'));
    needUpstream(action.canary.canary, at('action', 'canary', 'canary'));
  }
  if (route.mirror) needUpstream(route.mirror.upstream, at('mirror', 'upstream'));
  route.rate_limits.forEach((name, i) => {
    if (!policies.has(name)) issues.push({ path: at('rate_limits', i), message: `unknown rate-limit policy '${name}'` });
  });
  route.auth.jwt_providers?.forEach((name, i) => {
    if (!providers.has(name)) issues.push({ path: at('auth', 'jwt_providers', i), message: `unknown JWT provider '${name}'` });
  });
  if (route.auth.mode === 'jwt' && providers.size === 0) {
    issues.push({ path: at('auth', 'mode'), message: 'auth mode jwt needs at least one JWT provider' });
  }
  return issues;
}

/**
 * A route opts out of gateway-scoped policies only: opting out of a route-scoped
 * one (it applies only where listed) or of one the route also lists would be a
 * no-op or a contradiction, so either is reported rather than silently ignored.
 */
function optOutIssues(route: Route, scopeOf: (policy: string) => string | undefined, at: At): Issue[] {
  const issues: Issue[] = [];
  route.rate_limit_opt_out.forEach((name, i) => {
    const scope = scopeOf(name);
    const path = at('rate_limit_opt_out', i);
    if (scope === undefined) issues.push({ path, message: `unknown rate-limit policy '${name}'` });
    else if (scope !== 'gateway') issues.push({ path, message: `rate-limit policy '${name}' is not gateway-scoped; only gateway policies can be opted out of` });
    else if (route.rate_limits.includes(name)) issues.push({ path, message: `rate-limit policy '${name}' is both listed in rate_limits and opted out of` });
  });
  return issues;
}

/**
 * Two routes with the same priority and the same hosts and matchers would compete
 * for the same requests, and only the ordering tie-break (name) would decide; the
 * later one in the list is reported.
 */
function ambiguityIssue(index: number, first: string): Issue {
  return { path: ['routes', index, 'match'], message: `ambiguous: route '${first}' has the same priority, hosts and matchers` };
}

/**
 * Matcher keys of frozen routes (they cannot change, so their key cannot): a
 * route's key is asked for when the index adds it, when it removes it and when
 * a change is validated, and building it is the costliest part of each.
 */
const matcherKeys = new WeakMap<Route, string>();

/** A canonical string of everything that decides which requests a route matches. */
export function matcherKey(route: Route): string {
  const known = matcherKeys.get(route);
  if (known !== undefined) return known;
  const key = buildMatcherKey(route);
  if (Object.isFrozen(route) && Object.isFrozen(route.match) && Object.isFrozen(route.hosts)) matcherKeys.set(route, key);
  return key;
}

function buildMatcherKey(route: Route): string {
  const { path, methods, headers, query } = route.match;
  return JSON.stringify([
    route.priority,
    [...route.hosts].sort(),
    [path.exact ?? null, path.prefix ?? null, path.regex ?? null, path.ignore_case ?? false],
    [...(methods ?? [])].sort(),
    (headers ?? []).map(headerMatchKey).sort(),
    (query ?? []).map(queryMatchKey).sort(),
  ]);
}

function headerMatchKey(h: HeaderMatch): string {
  return JSON.stringify([h.name, h.exact ?? null, h.prefix ?? null, h.regex ?? null, h.present ?? null, h.invert ?? false]);
}

function queryMatchKey(q: QueryMatch): string {
  return JSON.stringify([q.name, q.exact ?? null, q.regex ?? null, q.present ?? null]);
}

function subjectKey(credential: Credential): string | undefined {
  return credential.jwt ? `${credential.jwt.provider}\0${credential.jwt.subject}` : undefined;
}

/** A credential's reference issues (not the subject clash, which needs its group). */
function credentialReferenceIssues(credential: Credential, index: number, consumers: Names, providers: Names): Issue[] {
  const issues: Issue[] = [];
  if (!consumers.has(credential.consumer)) {
    issues.push({ path: ['credentials', index, 'consumer'], message: `unknown consumer '${credential.consumer}'` });
  }
  if (credential.jwt && !providers.has(credential.jwt.provider)) {
    issues.push({ path: ['credentials', index, 'jwt', 'provider'], message: `unknown JWT provider '${credential.jwt.provider}'` });
  }
  return issues;
}

function subjectIssue(index: number, first: string): Issue {
  return { path: ['credentials', index, 'jwt', 'subject'], message: `credential '${first}' already maps this provider and subject` };
}

function duplicateNames(kind: Kind, objects: readonly { name: string }[]): Issue[] {
  const seen = new Set<string>();
  const issues: Issue[] = [];
  objects.forEach((object, index) => {
    if (seen.has(object.name)) issues.push({ path: [kind, index, 'name'], message: `duplicate name '${object.name}' in ${kind}` });
    seen.add(object.name);
  });
  return issues;
}

// ---- the whole State -------------------------------------------------------------

/** Cross-object rules over a whole State. Paths point into it (e.g. ['routes', 3, 'action', 'upstream']). */
export function validateState(state: State): Issue[] {
  const issues: Issue[] = [];
  for (const kind of KINDS) issues.push(...duplicateNames(kind, state[kind]));
  const upstreams = new Set(state.upstreams.map((u) => u.name));
  const policies = new Set(state.rate_limit_policies.map((p) => p.name));
  const providers = new Set(state.jwt_providers.map((p) => p.name));
  const consumers = new Set(state.consumers.map((c) => c.name));
  const scopes = new Map(state.rate_limit_policies.map((p) => [p.name, p.scope]));
  const scopeOf = (name: string) => scopes.get(name);
  state.routes.forEach((route, index) => {
    const at: At = (...path) => ['routes', index, ...path];
    issues.push(...routeReferenceIssues(route, upstreams, policies, providers, at));
    issues.push(...optOutIssues(route, scopeOf, at));
  });
  const firstByKey = new Map<string, string>();
  state.routes.forEach((route, index) => {
    const key = matcherKey(route);
    const first = firstByKey.get(key);
    if (first !== undefined) issues.push(ambiguityIssue(index, first));
    else firstByKey.set(key, route.name);
  });
  const firstBySubject = new Map<string, string>();
  state.credentials.forEach((credential, index) => {
    issues.push(...credentialReferenceIssues(credential, index, consumers, providers));
    const key = subjectKey(credential);
    if (key === undefined) return;
    const first = firstBySubject.get(key);
    if (first !== undefined) issues.push(subjectIssue(index, first));
    else firstBySubject.set(key, credential.name);
  });
  return issues;
}

// ---- only what a change can affect -----------------------------------------------

/** name -> the names that point at it (a reverse reference, or a shared key). */
class Links {
  private readonly map = new Map<string, Set<string>>();
  add(key: string, name: string): void {
    let set = this.map.get(key);
    if (!set) this.map.set(key, (set = new Set()));
    set.add(name);
  }
  remove(key: string, name: string): void {
    const set = this.map.get(key);
    if (!set) return;
    set.delete(name);
    if (set.size === 0) this.map.delete(key);
  }
  get(key: string): ReadonlySet<string> {
    return this.map.get(key) ?? EMPTY;
  }
}

const EMPTY: ReadonlySet<string> = new Set();

/** The names of routes and credentials a route or credential reference points at, by target kind. */
function routeTargets(route: Route): string[] {
  return [
    ...referencedUpstreams(route).map((name) => `upstreams/${name}`),
    ...route.rate_limits.map((name) => `rate_limit_policies/${name}`),
    ...route.rate_limit_opt_out.map((name) => `rate_limit_policies/${name}`),
    ...(route.auth.jwt_providers ?? []).map((name) => `jwt_providers/${name}`),
  ];
}

function credentialTargets(credential: Credential): string[] {
  return [`consumers/${credential.consumer}`, ...(credential.jwt ? [`jwt_providers/${credential.jwt.provider}`] : [])];
}

/**
 * Reverse links of one config, kept in step with it by apply(): who references
 * each object, which routes share a matcher key, which credentials share a
 * (provider, subject), which routes need a JWT provider to exist. Built once
 * from a State (O(config)), then updated per change (O(change)).
 */
export class ValidationIndex {
  private readonly routeRefs = new Links();
  private readonly credentialRefs = new Links();
  private readonly routeKeys = new Links();
  private readonly subjects = new Links();
  private readonly jwtRoutes = new Set<string>();

  static of(state: Pick<State, 'routes' | 'credentials'>): ValidationIndex {
    const index = new ValidationIndex();
    for (const route of state.routes) index.add('routes', route);
    for (const credential of state.credentials) index.add('credentials', credential);
    return index;
  }

  /** Moves the index from the config before `changes` to the config after. */
  apply(changes: readonly ObjectChange[]): void {
    for (const change of changes) if (change.before) this.remove(change.kind, change.before);
    for (const change of changes) if (change.after) this.add(change.kind, change.after);
  }

  /** The inverse of apply(changes). */
  revert(changes: readonly ObjectChange[]): void {
    this.apply(changes.map((c) => ({ kind: c.kind, name: c.name, before: c.after, after: c.before })));
  }

  referencingRoutes(kind: Kind, name: string): ReadonlySet<string> {
    return this.routeRefs.get(`${kind}/${name}`);
  }
  referencingCredentials(kind: Kind, name: string): ReadonlySet<string> {
    return this.credentialRefs.get(`${kind}/${name}`);
  }
  routesWithKey(key: string): ReadonlySet<string> {
    return this.routeKeys.get(key);
  }
  credentialsWithSubject(key: string): ReadonlySet<string> {
    return this.subjects.get(key);
  }
  routesNeedingJwtProvider(): ReadonlySet<string> {
    return this.jwtRoutes;
  }

  private add(kind: Kind, object: { name: string }): void {
    if (kind === 'routes') {
      const route = object as Route;
      for (const target of routeTargets(route)) this.routeRefs.add(target, route.name);
      this.routeKeys.add(matcherKey(route), route.name);
      if (route.auth.mode === 'jwt') this.jwtRoutes.add(route.name);
    } else if (kind === 'credentials') {
      const credential = object as Credential;
      for (const target of credentialTargets(credential)) this.credentialRefs.add(target, credential.name);
      const key = subjectKey(credential);
      if (key !== undefined) this.subjects.add(key, credential.name);
    }
  }

  private remove(kind: Kind, object: { name: string }): void {
    if (kind === 'routes') {
      const route = object as Route;
      for (const target of routeTargets(route)) this.routeRefs.remove(target, route.name);
      this.routeKeys.remove(matcherKey(route), route.name);
      this.jwtRoutes.delete(route.name);
    } else if (kind === 'credentials') {
      const credential = object as Credential;
      for (const target of credentialTargets(credential)) this.credentialRefs.remove(target, credential.name);
      const key = subjectKey(credential);
      if (key !== undefined) this.subjects.remove(key, credential.name);
    }
  }
}

/** Position of `name` in an array sorted by name (binary search); -1 when absent. */
function positionOf(objects: readonly { name: string }[], name: string): number {
  let lo = 0;
  let hi = objects.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const at = objects[mid]!.name;
    if (at === name) return mid;
    if (at < name) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function sortedUniqueNames(objects: readonly { name: string }[]): boolean {
  for (let i = 1; i < objects.length; i++) if (!(objects[i - 1]!.name < objects[i]!.name)) return false;
  return true;
}

function namesOf(objects: readonly { name: string }[]): Names {
  return { has: (name) => positionOf(objects, name) >= 0, size: objects.length };
}

/** Issues tagged with where validateState would emit them, to give the same order. */
interface Placed {
  section: number;
  position: number;
  issues: Issue[];
}

/**
 * The issues validateState(next) would report, visiting only what `changes`
 * can affect. `index` must describe the config after the changes (apply them
 * first) and the config before them must have been valid. When `next` is not
 * sorted by name with unique names per kind (a declarative apply with
 * duplicates) this falls back to the full check. `sortedUnique`: the caller
 * built `next`'s lists sorted by unique names (the store's object writes do),
 * so they need not be checked (that check is the one O(config) step here).
 */
export function validateChange(index: ValidationIndex, next: State, changes: readonly ObjectChange[], opts: { sortedUnique?: boolean } = {}): Issue[] {
  if (!opts.sortedUnique && !KINDS.every((kind) => sortedUniqueNames(next[kind]))) return validateState(next);
  const upstreams = namesOf(next.upstreams);
  const policies = namesOf(next.rate_limit_policies);
  const providers = namesOf(next.jwt_providers);
  const consumers = namesOf(next.consumers);
  const scopeOf = (name: string) => {
    const at = positionOf(next.rate_limit_policies, name);
    return at < 0 ? undefined : next.rate_limit_policies[at]!.scope;
  };

  const routes = new Set<string>();
  const routeKeys = new Set<string>();
  const credentials = new Set<string>();
  const subjects = new Set<string>();
  for (const change of changes) {
    if (change.kind === 'routes') {
      if (change.after) routes.add(change.name);
      for (const version of [change.before, change.after]) if (version) routeKeys.add(matcherKey(version as Route));
    } else if (change.kind === 'credentials') {
      if (change.after) credentials.add(change.name);
      for (const version of [change.before, change.after]) {
        const key = version && subjectKey(version as Credential);
        if (key !== undefined) subjects.add(key);
      }
    } else {
      for (const name of index.referencingRoutes(change.kind, change.name)) routes.add(name);
      for (const name of index.referencingCredentials(change.kind, change.name)) credentials.add(name);
      if (change.kind === 'jwt_providers' && next.jwt_providers.length === 0) {
        for (const name of index.routesNeedingJwtProvider()) routes.add(name);
      }
    }
  }

  const placed: Placed[] = [];
  for (const name of routes) {
    const position = positionOf(next.routes, name);
    if (position < 0) continue;
    const route = next.routes[position]!;
    const at: At = (...path) => ['routes', position, ...path];
    placed.push({ section: 1, position, issues: [...routeReferenceIssues(route, upstreams, policies, providers, at), ...optOutIssues(route, scopeOf, at)] });
  }
  for (const key of routeKeys) {
    const group = [...index.routesWithKey(key)].map((name) => positionOf(next.routes, name)).filter((p) => p >= 0).sort((a, b) => a - b);
    const first = group[0] === undefined ? '' : next.routes[group[0]]!.name;
    for (const position of group.slice(1)) placed.push({ section: 2, position, issues: [ambiguityIssue(position, first)] });
  }
  for (const name of credentials) {
    const position = positionOf(next.credentials, name);
    if (position < 0) continue;
    placed.push({ section: 3, position, issues: credentialReferenceIssues(next.credentials[position]!, position, consumers, providers) });
  }
  for (const key of subjects) {
    const group = [...index.credentialsWithSubject(key)].map((name) => positionOf(next.credentials, name)).filter((p) => p >= 0).sort((a, b) => a - b);
    const first = group[0] === undefined ? '' : next.credentials[group[0]]!.name;
    // After the credential's reference issues, as validateState emits them.
    for (const position of group.slice(1)) placed.push({ section: 3.5, position, issues: [subjectIssue(position, first)] });
  }
  return ordered(placed);
}

/** validateState's order: routes by position, ambiguities by position, credentials by position (references, then the subject clash). */
function ordered(placed: Placed[]): Issue[] {
  const rank = (p: Placed) => (p.section === 3.5 ? [3, p.position, 1] : [p.section, p.position, 0]);
  return placed
    .sort((a, b) => {
      const [sa, pa, ta] = rank(a);
      const [sb, pb, tb] = rank(b);
      return sa! - sb! || pa! - pb! || ta! - tb!;
    })
    .flatMap((p) => p.issues);
}
