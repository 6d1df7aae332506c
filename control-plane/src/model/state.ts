// State: the whole desired configuration at one revision. Object schemas check each
// object alone; validateState checks the rules that span objects (references,
// uniqueness, ambiguity).
//
// The invariant this folder keeps (DESIGN.md, "Behaviour users can count on"): a
// change that Envoy would reject never reaches the fleet. model/ is the gate,
// translate/ never emits what model/ did not check. So every value translate/
// writes into Envoy config, including what it derives (the canary cookie regex,
// the methods alternation), is checked here with Envoy's own rules: RE2 syntax and
// program size (re2.ts), byte limits, IP literals, header names, and the text rule
// (no NUL or lone surrogate in any string) over every object. The property-based
// tests with the pinned Envoy as the judge (test/e2e/model-gate-envoy.test.ts)
// keep it so.
import { z } from 'zod';
import { type Issue, issuesFromZod, safeText } from './common.ts';
import { ConsumerSchema, CredentialSchema } from './consumer.ts';
import { JwtProviderSchema } from './jwt-provider.ts';
import { RateLimitPolicySchema } from './rate-limit-policy.ts';
import { type HeaderMatch, type QueryMatch, type Route, RouteSchema } from './route.ts';
import { UpstreamSchema } from './upstream.ts';

const CONFIG_SHAPE = {
  upstreams: z.array(UpstreamSchema).default([]),
  routes: z.array(RouteSchema).default([]),
  consumers: z.array(ConsumerSchema).default([]),
  credentials: z.array(CredentialSchema).default([]),
  jwt_providers: z.array(JwtProviderSchema).default([]),
  rate_limit_policies: z.array(RateLimitPolicySchema).default([]),
};

/**
 * The whole configuration minus the revision: the body of PUT /v1/config. The text
 * rule runs over the whole config too, so kinds whose schema lacks it (upstreams)
 * are covered wherever a config is validated (the store validates every write).
 */
export const DeclarativeConfigSchema = z.object(CONFIG_SHAPE).strict().superRefine(safeText);

export const StateSchema = z
  .object({ ...CONFIG_SHAPE, revision: z.int().min(0) })
  .strict()
  .superRefine(safeText);

export type DeclarativeConfig = z.infer<typeof DeclarativeConfigSchema>;
export type DeclarativeConfigInput = z.input<typeof DeclarativeConfigSchema>;
export type State = z.infer<typeof StateSchema>;

/** The object kinds of a State, as its array keys. */
export const KINDS = ['upstreams', 'routes', 'consumers', 'credentials', 'jwt_providers', 'rate_limit_policies'] as const;
export type Kind = (typeof KINDS)[number];

export function emptyState(revision = 0): State {
  return { revision, upstreams: [], routes: [], consumers: [], credentials: [], jwt_providers: [], rate_limit_policies: [] };
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/** Schema check plus cross-object rules, for a declarative config. */
export function parseDeclarativeConfig(input: unknown): ParseResult<DeclarativeConfig> {
  const parsed = DeclarativeConfigSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  const issues = validateState({ revision: 0, ...parsed.data });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: parsed.data };
}

/** Schema check plus cross-object rules, for a whole State. */
export function parseState(input: unknown): ParseResult<State> {
  const parsed = StateSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  const issues = validateState(parsed.data);
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: parsed.data };
}

/** Cross-object rules. Paths point into the State (e.g. ['routes', 3, 'action', 'upstream']). */
export function validateState(state: State): Issue[] {
  const issues: Issue[] = [];
  for (const kind of KINDS) issues.push(...duplicateNames(kind, state[kind]));
  const upstreams = new Set(state.upstreams.map((u) => u.name));
  const policies = new Set(state.rate_limit_policies.map((p) => p.name));
  const providers = new Set(state.jwt_providers.map((p) => p.name));
  state.routes.forEach((route, index) => {
    const at = (...path: (string | number)[]) => ['routes', index, ...path];
    issues.push(...routeReferenceIssues(route, upstreams, policies, providers, at));
    issues.push(...optOutIssues(route, state.rate_limit_policies, at));
  });
  issues.push(...ambiguousRoutes(state.routes));
  issues.push(...credentialIssues(state));
  return issues;
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

type At = (...path: (string | number)[]) => (string | number)[];

function routeReferenceIssues(route: Route, upstreams: Set<string>, policies: Set<string>, providers: Set<string>, at: At): Issue[] {
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
function optOutIssues(route: Route, policies: State['rate_limit_policies'], at: At): Issue[] {
  const scopes = new Map(policies.map((p) => [p.name, p.scope]));
  const issues: Issue[] = [];
  route.rate_limit_opt_out.forEach((name, i) => {
    const scope = scopes.get(name);
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
function ambiguousRoutes(routes: readonly Route[]): Issue[] {
  const firstByKey = new Map<string, string>();
  const issues: Issue[] = [];
  routes.forEach((route, index) => {
    const key = matcherKey(route);
    const first = firstByKey.get(key);
    if (first !== undefined) {
      issues.push({ path: ['routes', index, 'match'], message: `ambiguous: route '${first}' has the same priority, hosts and matchers` });
    } else {
      firstByKey.set(key, route.name);
    }
  });
  return issues;
}

/** A canonical string of everything that decides which requests a route matches. */
export function matcherKey(route: Route): string {
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

function credentialIssues(state: State): Issue[] {
  const consumers = new Set(state.consumers.map((c) => c.name));
  const providers = new Set(state.jwt_providers.map((p) => p.name));
  const subjects = new Map<string, string>();
  const issues: Issue[] = [];
  state.credentials.forEach((credential, index) => {
    if (!consumers.has(credential.consumer)) {
      issues.push({ path: ['credentials', index, 'consumer'], message: `unknown consumer '${credential.consumer}'` });
    }
    if (!credential.jwt) return;
    if (!providers.has(credential.jwt.provider)) {
      issues.push({ path: ['credentials', index, 'jwt', 'provider'], message: `unknown JWT provider '${credential.jwt.provider}'` });
    }
    const key = `${credential.jwt.provider}\0${credential.jwt.subject}`;
    const first = subjects.get(key);
    if (first !== undefined) {
      issues.push({ path: ['credentials', index, 'jwt', 'subject'], message: `credential '${first}' already maps this provider and subject` });
    } else {
      subjects.set(key, credential.name);
    }
  });
  return issues;
}
