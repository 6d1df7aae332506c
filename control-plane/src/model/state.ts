// State: the whole desired configuration at one revision. Object schemas check each
// object alone; cross-object.ts checks the rules that span objects (references,
// uniqueness, ambiguity), for a whole State or for one change.
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
import { RouteSchema } from './route.ts';
import { validateState } from './cross-object.ts';
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

/**
 * Schema check plus cross-object rules, for a declarative config.
 * `beforeCrossCheck` sees the parsed config first (the admin API freezes its
 * objects there, so what the cross-object check works out per route, such as
 * its matcher key, is kept for the commit that follows instead of redone).
 */
export function parseDeclarativeConfig(input: unknown, opts: { beforeCrossCheck?: (config: DeclarativeConfig) => void } = {}): ParseResult<DeclarativeConfig> {
  const parsed = DeclarativeConfigSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  opts.beforeCrossCheck?.(parsed.data);
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
