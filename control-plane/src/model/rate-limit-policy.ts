// RateLimitPolicy: how many requests per period, counted per which key.
import { z } from 'zod';
import { HeaderNameSchema, NameSchema, safeText } from './common.ts';
import { RATE_LIMIT_PERIODS } from './contract.ts';

/** One dimension of a rate-limit key. */
export const RateLimitKeyPartSchema = z.union([
  z.enum(['route', 'consumer', 'client_ip']),
  z.object({ header: HeaderNameSchema }).strict(),
]);

export const RateLimitPolicySchema = z
  .object({
    name: NameSchema,
    /** Requests are counted per distinct combination of these parts. */
    key: z
      .array(RateLimitKeyPartSchema)
      .min(1)
      .max(8)
      .superRefine((parts, ctx) => {
        const seen = new Set<string>();
        parts.forEach((part, index) => {
          const id = keyPartId(part);
          if (seen.has(id)) ctx.addIssue({ code: 'custom', path: [index], message: `duplicate key part '${id}'` });
          seen.add(id);
        });
      }),
    limit: z
      .object({
        requests: z.int().min(1).max(1_000_000_000),
        per: z.enum(RATE_LIMIT_PERIODS),
      })
      .strict(),
    /** Extra requests allowed above the limit in a short burst. */
    burst: z.int().min(0).max(1_000_000_000).optional(),
    algorithm: z.enum(['sliding_window', 'fixed_window']).default('sliding_window'),
    /**
     * When the counters cannot be read (Redis or the rate-limit service down or
     * slower than the timeout): `allow` admits, `deny` refuses. A request under
     * several policies is refused when any of them says deny.
     */
    on_error: z.enum(['allow', 'deny']).default('allow'),
    /**
     * `route`: applies to the routes that list it in `rate_limits`. `gateway`:
     * applies to every forwarding route, except those naming it in
     * `rate_limit_opt_out` (the way a global plugin or a gateway-level policy
     * works in Kong and Envoy Gateway).
     */
    scope: z.enum(['route', 'gateway']).default('route'),
  })
  .strict()
  .superRefine(safeText);

export type RateLimitPolicy = z.infer<typeof RateLimitPolicySchema>;
export type RateLimitPolicyInput = z.input<typeof RateLimitPolicySchema>;
export type RateLimitKeyPart = z.infer<typeof RateLimitKeyPartSchema>;

/** A stable string for one key part: 'route', 'consumer', 'client_ip' or 'header:<name>'. */
export function keyPartId(part: RateLimitKeyPart): string {
  return typeof part === 'string' ? part : `header:${part.header}`;
}

/** The slice of a Route that decides its policies (kept structural: model/route.ts imports this file's neighbours). */
export interface RateLimitedRoute {
  rate_limits: readonly string[];
  rate_limit_opt_out?: readonly string[] | undefined;
}

/**
 * The policies in force on a forwarding route, in a fixed order: the route's
 * own `rate_limits` in their order, then every gateway-scoped policy the route
 * does not opt out of (by name), each once. Unknown names are skipped
 * (validateState reports them).
 */
export function routePolicies(route: RateLimitedRoute, policies: ReadonlyMap<string, RateLimitPolicy>): RateLimitPolicy[] {
  const out: RateLimitPolicy[] = [];
  const seen = new Set<string>();
  const add = (policy: RateLimitPolicy | undefined) => {
    if (!policy || seen.has(policy.name)) return;
    seen.add(policy.name);
    out.push(policy);
  };
  for (const name of route.rate_limits) add(policies.get(name));
  const optedOut = new Set(route.rate_limit_opt_out ?? []);
  const gateway = [...policies.values()].filter((p) => p.scope === 'gateway' && !optedOut.has(p.name));
  for (const policy of gateway.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) add(policy);
  return out;
}
