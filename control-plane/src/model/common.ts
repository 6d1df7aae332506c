// Building blocks shared by the object schemas: names, header names, host
// patterns, regexes, byte limits, the text rule, and the "exactly one of these
// keys" rule.
import { SocketAddress, isIP } from 'node:net';
import { z } from 'zod';
import { captureGroupCount, re2Problem } from './re2.ts';

/** UTF-8 length: Envoy (protobuf validation, header limits) counts bytes, not characters. */
export function byteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

/** A string of at most `max` UTF-8 bytes. */
export function boundedText(max: number) {
  return z.string().refine((value) => byteLength(value) <= max, { message: `must be at most ${max} bytes (UTF-8)` });
}

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

// Header names come in three strengths, by what Sluice does with them:
//  - read (header matchers, CORS lists, hash and rate-limit keys): any lowercase
//    token. Pseudo-headers (:authority, :path, :method) cannot be written as
//    tokens on purpose: hosts, match.path and match.methods cover them.
//  - written on one route (request/response header add and remove): not the
//    headers that frame or route the message, which Envoy owns (host and the
//    hop-by-hop set; Envoy itself refuses host and pseudo-headers).
//  - claim targets (a JWT provider's claims_to_headers): the authz service sets
//    them on every authenticated request, and the gateway strips client copies
//    of them on every route, so on top of the above they may not be anything a
//    client or Envoy legitimately sends: credentials (authorization, cookie),
//    forwarding headers Envoy manages (x-forwarded-*, x-request-id, x-envoy-*),
//    content framing (content-type, content-encoding, expect), nor the gateway's
//    own identity headers x-sluice-* (contract.ts). x-user-id and x-consumer-id
//    are identity headers meant to be filled from claims, so they are allowed.

/** Headers that frame or route an HTTP message: Envoy owns them on every hop. */
const PROXY_MANAGED_HEADERS = new Set([
  'host', 'connection', 'content-length', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'keep-alive', 'proxy-connection',
]);

/** Headers a client or Envoy legitimately sends that the gateway must never strip gateway-wide. */
const CLIENT_OR_ENVOY_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'expect', 'content-type', 'content-encoding',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix',
  'forwarded', 'via', 'x-request-id', 'x-real-ip',
]);

export function isProxyManagedHeader(name: string): boolean {
  return PROXY_MANAGED_HEADERS.has(name);
}

/** True for headers that may not be claim targets (see above). */
export function isReservedClaimHeader(name: string): boolean {
  return PROXY_MANAGED_HEADERS.has(name) || CLIENT_OR_ENVOY_HEADERS.has(name) || name.startsWith('x-envoy-') || name.startsWith('x-sluice-');
}

export const MutableHeaderNameSchema = HeaderNameSchema.refine((name) => !isProxyManagedHeader(name), {
  message: 'this header is managed by the proxy and cannot be modified',
});

export const ClaimHeaderNameSchema = HeaderNameSchema.refine((name) => !isReservedClaimHeader(name), {
  message: 'this header cannot carry a claim: the proxy, the client or the gateway itself owns it (see model/common.ts)',
});

/** Cookie names: RFC 6265 tokens. */
export const CookieNameSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a cookie name (token characters only)');

/** Header values: no CR/LF/NUL (they would split or truncate the header); 8 KiB (Envoy's hard cap is 16 KiB). */
export const HeaderValueSchema = boundedText(8192).regex(/^[^\r\n\0]*$/, 'must not contain CR, LF or NUL');

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

/**
 * A name whose last label is a number (`1.2.3`, `999.1.1.1`, `0x7f.1.1.1`) is no
 * DNS name: resolvers and URL parsers read it as an IPv4 address, and Envoy refuses
 * it as a malformed one. (No top-level domain is numeric.)
 */
function looksLikeIpv4(value: string): boolean {
  const last = value.slice(value.lastIndexOf('.') + 1);
  return /^(\d+|0x[0-9a-f]*)$/i.test(last);
}

/** Why `value` is not an endpoint host, or undefined. */
export function endpointHostProblem(value: string): string | undefined {
  // node's isIP is exact (no leading zeros, each IPv4 part <= 255); a zone (%eth0) is not an address Envoy takes.
  if (isIP(value) !== 0) return value.includes('%') ? 'an IPv6 zone (%...) is not supported' : undefined;
  if (looksLikeIpv4(value)) return 'looks like an IPv4 address but is not a valid one (four numbers 0-255, no leading zeros)';
  if (!isDnsName(value.toLowerCase())) return 'must be a hostname, an IPv4 or an IPv6 address';
  return undefined;
}

/**
 * True for exact IPv4/IPv6 literals (EDS endpoints must be IPs; hostnames need DNS
 * clusters). node's isIP is exact: `999.1.1.1` or `01.2.3.4` are not IPs.
 */
export function isIpLiteral(host: string): boolean {
  return isIP(host) !== 0;
}

/** An IP literal in the text form Envoy prints it in (inet_ntop): `0:0::1` -> `::1`. Pure, no I/O. */
export function canonicalIp(host: string): string {
  try {
    return new SocketAddress({ address: host, family: isIP(host) === 6 ? 'ipv6' : 'ipv4' }).address;
  } catch {
    return host; // not an address node can parse; the model refuses such hosts
  }
}

/** An endpoint address: DNS name (any case), IPv4 or IPv6 literal. */
export const EndpointHostSchema = z
  .string()
  .min(1)
  .max(253)
  .superRefine((value, ctx) => {
    const problem = endpointHostProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

export const PortSchema = z.int().min(1).max(65535);

/** A regex that Envoy's RE2 will compile within its program-size limit (see re2.ts). */
export const RegexSchema = boundedText(1024).superRefine((pattern, ctx) => {
  const problem = re2Problem(pattern);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** A URL path as Envoy matches it: starts with '/', no query, fragment or whitespace. */
// Control characters are refused too: Envoy's health-check path (and any path a
// request can carry) excludes C0 controls and DEL.
export const PathSchema = boundedText(1024)
  .regex(/^\/[^\s?#\x00-\x1f\x7f]*$/, "must start with '/' and contain no whitespace, control characters, '?' or '#'");

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

// ---- the text rule ---------------------------------------------------------------
//
// No string anywhere in the model may hold NUL or a lone surrogate (UTF-16 that has
// no UTF-8 form): Postgres refuses both in JSON, protobuf would carry a U+FFFD or a
// truncated string to Envoy, and RE2 and header codecs treat NUL specially. The
// rule is applied once per object kind (and once over a whole config) by walking
// the parsed value, so no field, present or future, can be forgotten.

const UNSAFE_TEXT = /\0|\p{Cs}/u;

/** Why `text` is not acceptable anywhere in the model, or undefined. */
export function textProblem(text: string): string | undefined {
  if (!UNSAFE_TEXT.test(text)) return undefined;
  return text.includes('\0') ? 'must not contain NUL (\\u0000)' : 'must be valid Unicode (it contains a lone surrogate)';
}

/**
 * Whether any string value or object key in `value` breaks the text rule. No
 * paths are built: almost every value passes, and a 10,000-route config has
 * some 200,000 values (paths cost more than the test itself).
 */
function holdsUnsafeText(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const current = stack.pop();
    if (typeof current === 'string') {
      if (UNSAFE_TEXT.test(current)) return true;
    } else if (Array.isArray(current)) {
      for (const item of current) stack.push(item);
    } else if (typeof current === 'object' && current !== null) {
      for (const key in current) {
        if (!Object.hasOwn(current, key)) continue;
        if (UNSAFE_TEXT.test(key)) return true;
        stack.push((current as Record<string, unknown>)[key]);
      }
    }
  }
  return false;
}

/** Issues for every string value or object key in `value` that breaks the text rule (iterative: no depth limit). */
export function unsafeTextIssues(value: unknown, base: readonly (string | number)[] = []): Issue[] {
  if (!holdsUnsafeText(value)) return [];
  const issues: Issue[] = [];
  const stack: Array<{ value: unknown; path: (string | number)[] }> = [{ value, path: [...base] }];
  while (stack.length > 0) {
    const { value: current, path } = stack.pop()!;
    if (typeof current === 'string') {
      const problem = textProblem(current);
      if (problem) issues.push({ path, message: problem });
    } else if (Array.isArray(current)) {
      current.forEach((item, index) => stack.push({ value: item, path: [...path, index] }));
    } else if (typeof current === 'object' && current !== null) {
      for (const [key, item] of Object.entries(current)) {
        const keyProblem = textProblem(key);
        if (keyProblem) issues.push({ path, message: `a key ${keyProblem}` });
        else stack.push({ value: item, path: [...path, key] });
      }
    }
  }
  return issues.reverse();
}

/** The text rule as a zod refinement, for an object kind's schema. */
export function safeText(value: unknown, ctx: z.RefinementCtx): void {
  for (const issue of unsafeTextIssues(value)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
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
