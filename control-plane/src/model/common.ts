// Building blocks shared by the object schemas: names, header names, host
// patterns, regexes, and the "exactly one of these keys" rule.
import { z } from 'zod';
import { captureGroupCount, re2Problem } from './re2.ts';

/** A name is an object's identity across the system (store keys, Envoy names, CLI). */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const NameSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(NAME_PATTERN, 'must be lowercase letters, digits and inner hyphens (a DNS label)');

/** HTTP header field names as Envoy stores them: lowercase RFC 9110 tokens. */
export const HEADER_NAME_PATTERN = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

export const HeaderNameSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(HEADER_NAME_PATTERN, 'must be a lowercase HTTP header name (token characters only)');

/** Headers a route may not add, set or remove: Envoy refuses to touch them. */
const PROTECTED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'te', 'upgrade', 'keep-alive', 'proxy-connection']);

export const MutableHeaderNameSchema = HeaderNameSchema.refine((name) => !PROTECTED_HEADERS.has(name), {
  message: 'this header is managed by the proxy and cannot be modified',
});

/** Cookie names: RFC 6265 tokens. */
export const CookieNameSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a cookie name (token characters only)');

/** Header values: printable, no CR/LF/NUL (they would split or truncate the header). */
export const HeaderValueSchema = z
  .string()
  .max(8192)
  .regex(/^[^\r\n\0]*$/, 'must not contain CR, LF or NUL');

const DNS_LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(?=.{1,253}$)${DNS_LABEL}(\\.${DNS_LABEL})*$`);

export function isDnsName(value: string): boolean {
  return DNS_NAME.test(value);
}

export const HostnameSchema = z.string().refine(isDnsName, { message: 'must be a lowercase DNS name' });

/**
 * Route host patterns: `*` (any host), an exact DNS name, or `*.` + DNS name (any
 * subdomain). Prefix wildcards (`foo.*`) and ports are not accepted: ports are
 * ignored when matching (ignore_port_in_host_matching).
 */
export const HostPatternSchema = z.string().refine(
  (value) => value === '*' || isDnsName(value) || (value.startsWith('*.') && isDnsName(value.slice(2))),
  { message: "must be '*', a lowercase DNS name, or '*.' followed by a DNS name" },
);

/** An endpoint address: DNS name (any case), IPv4 or IPv6 literal. */
export const EndpointHostSchema = z
  .string()
  .min(1)
  .max(253)
  .refine(
    (value) => isDnsName(value.toLowerCase()) || z.ipv4().safeParse(value).success || z.ipv6().safeParse(value).success,
    { message: 'must be a hostname, an IPv4 or an IPv6 address' },
  );

export const PortSchema = z.int().min(1).max(65535);

/** A regex that Envoy's RE2 will compile (see re2.ts for what is checked). */
export const RegexSchema = z
  .string()
  .max(1024)
  .superRefine((pattern, ctx) => {
    const problem = re2Problem(pattern);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** A URL path as Envoy matches it: starts with '/', no query, fragment or whitespace. */
export const PathSchema = z
  .string()
  .min(1)
  .max(1024)
  .regex(/^\/[^\s?#]*$/, "must start with '/' and contain no whitespace, '?' or '#'");

/** Milliseconds, as whole numbers. */
export function millis(max: number) {
  return z.int().min(1).max(max);
}

export const HOUR_MS = 3_600_000;

/**
 * Adds an issue unless exactly one (or, with `allowNone`, at most one) of `keys`
 * is set. Unions would lose the field path of errors inside the chosen branch, so
 * "one of" objects are plain objects with optional keys plus this rule.
 */
export function oneOf<T extends object>(keys: readonly (keyof T & string)[], options: { allowNone?: boolean } = {}) {
  return (value: T, ctx: z.RefinementCtx): void => {
    const present = keys.filter((key) => value[key] !== undefined);
    if (present.length > 1) {
      ctx.addIssue({ code: 'custom', path: [present[1]!], message: `only one of ${keys.join(', ')} may be set` });
    } else if (present.length === 0 && !options.allowNone) {
      ctx.addIssue({ code: 'custom', path: [], message: `exactly one of ${keys.join(', ')} is required` });
    }
  };
}

/** Adds an issue for each repeated value (by `keyOf`) after its first occurrence. */
export function uniqueBy<T>(keyOf: (item: T) => string, what: string) {
  return (items: readonly T[], ctx: z.RefinementCtx): void => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const key = keyOf(item);
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: [index], message: `duplicate ${what} '${key}'` });
      seen.add(key);
    });
  };
}

/** Checks that `\N` references in a regex substitution name existing capture groups. */
export function substitutionProblem(pattern: string, substitution: string): string | undefined {
  const groups = captureGroupCount(pattern);
  for (const match of substitution.matchAll(/\\(\d)/g)) {
    const index = Number(match[1]);
    if (index > groups) return `substitution refers to group \\${index} but the pattern has ${groups} group(s)`;
  }
  return undefined;
}

/** A field-level problem, with the path of the offending field. */
export interface Issue {
  path: (string | number)[];
  message: string;
}

/**
 * Flattens zod issues into `{path, message}`; unknown keys become one issue per key
 * with the key in the path, so callers can always name the offending field.
 */
export function issuesFromZod(error: z.ZodError): Issue[] {
  const out: Issue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map((segment) => (typeof segment === 'symbol' ? String(segment) : segment));
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: [...path, key], message: `unknown field '${key}'` });
    } else {
      out.push({ path, message: issue.message });
    }
  }
  return out;
}
