// Route: which requests (hosts + match) go where (action), and what happens on the way.
import { z } from 'zod';
import {
  CookieNameSchema,
  HOUR_MS,
  HeaderNameSchema,
  HeaderValueSchema,
  HostPatternSchema,
  HostnameSchema,
  MutableHeaderNameSchema,
  NameSchema,
  PathSchema,
  RegexSchema,
  boundedText,
  millis,
  oneOf,
  safeText,
  substitutionProblem,
  uniqueBy,
} from './common.ts';
import { isIdentityHeader } from './contract.ts';
import { re2Literal, re2Problem } from './re2.ts';

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/**
 * Envoy retry_on conditions Sluice accepts. Left out: retriable-status-codes and
 * retriable-headers (they need lists Sluice does not model).
 */
export const RETRY_ON = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
] as const;

export const PathMatchSchema = z
  .object({
    prefix: PathSchema.optional(),
    exact: PathSchema.optional(),
    /** RE2, matched against the whole path (without the query string). */
    regex: RegexSchema.optional(),
    /** Match prefix or exact without regard to ASCII case (absent: false). Regexes use (?i). */
    ignore_case: z.boolean().optional(),
  })
  .strict()
  .superRefine(oneOf(['prefix', 'exact', 'regex']))
  .superRefine((path, ctx) => {
    if (path.ignore_case !== undefined && path.regex !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['ignore_case'], message: 'ignore_case applies to prefix and exact; write (?i) in the regex instead' });
    }
  });

export const HeaderMatchSchema = z
  .object({
    name: HeaderNameSchema,
    exact: HeaderValueSchema.optional(),
    prefix: HeaderValueSchema.min(1).optional(),
    regex: RegexSchema.optional(),
    present: z.literal(true).optional(),
    invert: z.boolean().optional(),
  })
  .strict()
  .superRefine(oneOf(['exact', 'prefix', 'regex', 'present']));

export const QueryMatchSchema = z
  .object({
    name: boundedText(256).min(1).regex(/^[^\s&=#]+$/, 'must be a query parameter name'),
    exact: boundedText(1024).optional(),
    regex: RegexSchema.optional(),
    present: z.literal(true).optional(),
  })
  .strict()
  .superRefine(oneOf(['exact', 'regex', 'present']));

export const RouteMatchSchema = z
  .object({
    path: PathMatchSchema,
    methods: z
      .array(z.enum(HTTP_METHODS))
      .min(1)
      .superRefine(uniqueBy((m) => m, 'method'))
      .optional(),
    headers: z.array(HeaderMatchSchema).max(32).optional(),
    query: z.array(QueryMatchSchema).max(32).optional(),
  })
  .strict();

export const SplitEntrySchema = z
  .object({
    upstream: NameSchema,
    /** Percent of traffic; 0 keeps an entry in place during a shift. */
    weight: z.int().min(0).max(100),
  })
  .strict();

export const SplitSchema = z
  .array(SplitEntrySchema)
  .min(1)
  .max(16)
  .superRefine(uniqueBy((entry) => entry.upstream, 'upstream'))
  .superRefine((entries, ctx) => {
    const total = entries.reduce((sum, entry) => sum + entry.weight, 0);
    if (total !== 100) ctx.addIssue({ code: 'custom', message: `split weights must sum to 100 (got ${total})` });
  });

const HeaderValueMatchSchema = z.object({ name: HeaderNameSchema, value: HeaderValueSchema.min(1) }).strict();

const CookieMatchSchema = z
  .object({
    name: CookieNameSchema,
    value: z.string().min(1).max(1024).regex(/^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/, 'must be a cookie value'),
  })
  .strict();

/**
 * The regex that matches a canary cookie in the Cookie header (Envoy has no
 * cookie matcher; safe regexes match the whole value, so the pair may sit
 * anywhere in the `a=1; b=2` list). translate/ emits exactly this, and the model
 * checks it like any user regex, so a long cookie cannot make Envoy NACK.
 */
export function cookieCanaryRegex(name: string, value: string): string {
  return `(.*;\\s*)?${re2Literal(name)}=${re2Literal(value)}(\\s*;.*)?`;
}

export const CanarySchema = z
  .object({
    primary: NameSchema,
    canary: NameSchema,
    /** Requests carrying this header value always go to the canary. */
    header: HeaderValueMatchSchema.optional(),
    /** Requests carrying this cookie value always go to the canary. */
    cookie: CookieMatchSchema.optional(),
    /** Percent of the remaining traffic sent to the canary (default 0). */
    weight: z.int().min(0).max(100).default(0),
  })
  .strict()
  .superRefine((canary, ctx) => {
    if (canary.primary === canary.canary) ctx.addIssue({ code: 'custom', path: ['canary'], message: 'canary must differ from primary' });
    if (canary.cookie) {
      const problem = re2Problem(cookieCanaryRegex(canary.cookie.name, canary.cookie.value));
      if (problem) ctx.addIssue({ code: 'custom', path: ['cookie', 'value'], message: `cookie name and value are too long for the matcher Envoy needs: ${problem}` });
    }
  });

export const DirectResponseSchema = z
  .object({
    status: z.int().min(200).max(599),
    /** Envoy caps direct response bodies at 4 KiB by default. */
    body: z
      .string()
      .refine((body) => Buffer.byteLength(body, 'utf8') <= 4096, { message: 'must be at most 4096 bytes' })
      .optional(),
  })
  .strict();

export const REDIRECT_STATUSES = [301, 302, 303, 307, 308] as const;

export const RedirectSchema = z
  .object({
    scheme: z.enum(['http', 'https']).optional(),
    host: HostnameSchema.optional(),
    /** Replaces the whole path (and query, when it has one). */
    path: boundedText(1024).min(1).regex(/^\/[^\s#]*$/, "must start with '/' and contain no whitespace or '#'").optional(),
    status: z.literal(REDIRECT_STATUSES).default(302),
  })
  .strict()
  .superRefine((redirect, ctx) => {
    if (!redirect.scheme && !redirect.host && !redirect.path) {
      ctx.addIssue({ code: 'custom', message: 'a redirect needs at least one of scheme, host, path' });
    }
  });

export const ActionSchema = z
  .object({
    upstream: NameSchema.optional(),
    split: SplitSchema.optional(),
    canary: CanarySchema.optional(),
    direct_response: DirectResponseSchema.optional(),
    redirect: RedirectSchema.optional(),
  })
  .strict()
  .superRefine(oneOf(['upstream', 'split', 'canary', 'direct_response', 'redirect']));

export const MirrorSchema = z
  .object({
    upstream: NameSchema,
    percent: z.int().min(0).max(100).default(100),
  })
  .strict();

const RegexRewriteSchema = z
  .object({ pattern: RegexSchema, substitution: boundedText(1024) })
  .strict()
  .superRefine((rewrite, ctx) => {
    const problem = substitutionProblem(rewrite.pattern, rewrite.substitution);
    if (problem) ctx.addIssue({ code: 'custom', path: ['substitution'], message: problem });
  });

export const RewriteSchema = z
  .object({
    /** Replaces the matched prefix (or the whole exact path). */
    prefix: boundedText(1024).min(1).regex(/^\/[^\s?#]*$/, "must start with '/' and contain no whitespace, '?' or '#'").optional(),
    regex: RegexRewriteSchema.optional(),
    /** Host header sent upstream. */
    host: z
      .string()
      .max(260)
      .regex(/^[a-z0-9.-]+(:\d{1,5})?$/, 'must be a hostname, optionally with :port')
      .optional(),
  })
  .strict()
  .superRefine(oneOf(['prefix', 'regex'], { allowNone: true }));

export const RetriesSchema = z
  .object({
    on: z
      .array(z.enum(RETRY_ON))
      .min(1)
      .superRefine(uniqueBy((c) => c, 'retry condition')),
    count: z.int().min(1).max(10).default(1),
    per_try_timeout_ms: millis(HOUR_MS).optional(),
    backoff_base_ms: millis(60_000).optional(),
    backoff_max_ms: millis(HOUR_MS).optional(),
  })
  .strict()
  .superRefine((retries, ctx) => {
    if (retries.backoff_max_ms !== undefined && retries.backoff_base_ms === undefined) {
      ctx.addIssue({ code: 'custom', path: ['backoff_max_ms'], message: 'backoff_max_ms needs backoff_base_ms' });
    }
    if (retries.backoff_max_ms !== undefined && retries.backoff_base_ms !== undefined && retries.backoff_max_ms < retries.backoff_base_ms) {
      ctx.addIssue({ code: 'custom', path: ['backoff_max_ms'], message: 'backoff_max_ms must be >= backoff_base_ms' });
    }
  });

export const HeaderAddSchema = z
  .object({
    name: MutableHeaderNameSchema,
    /** A literal value ('%' is sent as is; Envoy formatters are not available). */
    value: HeaderValueSchema,
    /** Add alongside an existing value instead of replacing it. */
    append: z.boolean().default(false),
  })
  .strict();

export const HeaderMutationSchema = z
  .object({
    add: z.array(HeaderAddSchema).max(64).default([]),
    remove: z
      .array(MutableHeaderNameSchema)
      .max(64)
      .superRefine(uniqueBy((h) => h, 'header'))
      .default([]),
  })
  .strict();

export const AUTH_MODES = ['none', 'jwt', 'api_key', 'any'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** What a route does when the authz service cannot answer (see AuthSchema.on_error). */
export const AUTH_ON_ERROR = ['deny', 'allow'] as const;

export const ScopeSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be an OAuth scope token (no spaces, quotes or backslashes)');

export const AuthSchema = z
  .object({
    mode: z.enum(AUTH_MODES),
    /** All of these scopes are required (JWT scope/scp claim, or the API key's consumer tags). */
    scopes: z
      .array(ScopeSchema)
      .max(32)
      .superRefine(uniqueBy((s) => s, 'scope'))
      .default([]),
    /** JWT providers accepted on this route; absent means any configured provider. */
    jwt_providers: z
      .array(NameSchema)
      .min(1)
      .superRefine(uniqueBy((p) => p, 'provider'))
      .optional(),
    /**
     * When the authz service cannot be asked (down, timed out): deny (absent; the
     * request gets ext_authz's status_on_error) or allow (the request goes upstream
     * unauthenticated, with no identity headers).
     */
    on_error: z.enum(AUTH_ON_ERROR).optional(),
    /**
     * A query parameter that may carry the API key (absent: keys only in headers).
     * Unreserved URI characters only, so its name has one spelling; the parameter is
     * removed before the request goes upstream.
     */
    api_key_query: z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'must be 1-64 unreserved URI characters (letters, digits, . _ ~ -)').optional(),
  })
  .strict()
  .superRefine((auth, ctx) => {
    if (auth.mode === 'none' && auth.scopes.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'scopes need an auth mode other than none' });
    }
    if (auth.mode === 'none' && auth.on_error !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['on_error'], message: 'on_error needs an auth mode other than none' });
    }
    if ((auth.mode === 'none' || auth.mode === 'jwt') && auth.api_key_query !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['api_key_query'], message: 'api_key_query applies only to auth modes api_key and any' });
    }
    if (auth.on_error === 'allow' && auth.api_key_query !== undefined) {
      // Failing open, nobody would remove the key from the path: it would reach the upstream.
      ctx.addIssue({ code: 'custom', path: ['api_key_query'], message: 'api_key_query needs on_error deny (failing open would pass the key to the upstream)' });
    }
    if ((auth.mode === 'none' || auth.mode === 'api_key') && auth.jwt_providers) {
      ctx.addIssue({ code: 'custom', path: ['jwt_providers'], message: 'jwt_providers apply only to auth modes jwt and any' });
    }
  });

/** An allowed CORS origin: an exact origin (or '*') as a string, or {regex}. */
export const CorsOriginSchema = z.union([
  boundedText(1024).regex(/^(\*|[a-z][a-z0-9+.-]*:\/\/[^\s/?#]+)$/, "must be '*' or an origin like https://example.com"),
  z.object({ regex: RegexSchema }).strict(),
]);

export const CorsSchema = z
  .object({
    allow_origins: z.array(CorsOriginSchema).min(1).max(64),
    allow_methods: z
      .array(z.enum(HTTP_METHODS))
      .superRefine(uniqueBy((m) => m, 'method'))
      .default([]),
    allow_headers: z.array(HeaderNameSchema).max(64).default([]),
    expose_headers: z.array(HeaderNameSchema).max(64).default([]),
    max_age_s: z.int().min(0).max(86_400).optional(),
    allow_credentials: z.boolean().default(false),
  })
  .strict();

const RouteBaseSchema = z
  .object({
    name: NameSchema,
    hosts: z
      .array(HostPatternSchema)
      .min(1)
      .max(100)
      .superRefine(uniqueBy((h) => h, 'host'))
      .default(['*']),
    /** Higher wins when several routes match; see translate/order.ts for the full order. */
    priority: z.int().min(-10_000).max(10_000).default(0),
    match: RouteMatchSchema,
    action: ActionSchema,
    mirror: MirrorSchema.optional(),
    rewrite: RewriteSchema.optional(),
    /** Whole-request timeout; 0 disables it (Envoy's default is 15 s). */
    timeout_ms: z.int().min(0).max(HOUR_MS).optional(),
    retries: RetriesSchema.optional(),
    request_headers: HeaderMutationSchema.optional(),
    response_headers: HeaderMutationSchema.optional(),
    auth: AuthSchema.default({ mode: 'none', scopes: [] }),
    /** RateLimitPolicy names, all enforced. */
    rate_limits: z
      .array(NameSchema)
      .max(8)
      .superRefine(uniqueBy((p) => p, 'rate-limit policy'))
      .default([]),
    /** Gateway-scoped RateLimitPolicy names that do not apply to this route. */
    rate_limit_opt_out: z
      .array(NameSchema)
      .max(64)
      .superRefine(uniqueBy((p) => p, 'rate-limit policy'))
      .default([]),
    cors: CorsSchema.optional(),
  })
  .strict();

export const RouteSchema = RouteBaseSchema.superRefine(safeText)
  .superRefine(forwardingOnlyFields)
  .superRefine((route, ctx) => {
    if (route.rewrite?.prefix !== undefined && route.match.path.regex !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['rewrite', 'prefix'], message: 'a prefix rewrite needs a prefix or exact path match; use rewrite.regex with a regex match' });
    }
    route.request_headers?.add.forEach((header, index) => {
      if (isIdentityHeader(header.name)) {
        ctx.addIssue({ code: 'custom', path: ['request_headers', 'add', index, 'name'], message: 'identity headers are set only by the gateway\'s auth' });
      }
    });
  });

/** Fields that only make sense when the request is forwarded to an upstream. */
const FORWARDING_ONLY = ['mirror', 'rewrite', 'timeout_ms', 'retries'] as const;

function forwardingOnlyFields(route: z.infer<typeof RouteBaseSchema>, ctx: z.RefinementCtx): void {
  if (isForwarding(route.action)) return;
  for (const field of FORWARDING_ONLY) {
    if (route[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: `${field} applies only to routes that forward to an upstream` });
  }
  if (route.rate_limits.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['rate_limits'], message: 'rate_limits apply only to routes that forward to an upstream' });
  }
}

export type Route = z.infer<typeof RouteSchema>;
export type RouteInput = z.input<typeof RouteSchema>;
export type RouteAction = z.infer<typeof ActionSchema>;
export type PathMatch = z.infer<typeof PathMatchSchema>;
export type HeaderMatch = z.infer<typeof HeaderMatchSchema>;
export type QueryMatch = z.infer<typeof QueryMatchSchema>;
export type Canary = z.infer<typeof CanarySchema>;
export type SplitEntry = z.infer<typeof SplitEntrySchema>;
export type HeaderMutation = z.infer<typeof HeaderMutationSchema>;
export type Cors = z.infer<typeof CorsSchema>;
export type CorsOrigin = z.infer<typeof CorsOriginSchema>;

/** True when the action sends the request to an upstream (upstream, split, canary). */
export function isForwarding(action: RouteAction): boolean {
  return action.upstream !== undefined || action.split !== undefined || action.canary !== undefined;
}

/** Every upstream a route sends traffic to (action targets and mirror), in a fixed order. */
export function referencedUpstreams(route: Route): string[] {
  const names: string[] = [];
  if (route.action.upstream) names.push(route.action.upstream);
  for (const entry of route.action.split ?? []) names.push(entry.upstream);
  if (route.action.canary) names.push(route.action.canary.primary, route.action.canary.canary);
  if (route.mirror) names.push(route.mirror.upstream);
  return names;
}
