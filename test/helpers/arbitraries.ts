// fast-check generators for Sluice's model: Upstream, Route, Consumer, Credential,
// JwtProvider, RateLimitPolicy and whole States. They produce *inputs* (what a
// user would send to the admin API) and aim at the model's edges: empty and
// maximal strings (in characters and in bytes), multi-byte text, regexes from a
// small grammar (escapes, classes, \p classes, repetitions, non-ASCII), numbers at
// their bounds, every match kind, action, policy and upstream option.
//
// Most of what they produce should be admitted by the model; a few values that
// only look valid (RE2-refused escapes, IP-like names, garbage PEM, control
// characters) are mixed in at a low rate, because whether the model refuses them
// is exactly what the property checks. Callers filter with the model's parse and
// count the admission ratio (stateArbitrary's `tally`).
import fc from 'fast-check';
import {
  AUTH_MODES,
  HTTP_METHODS,
  JWT_ALGORITHMS,
  LB_POLICIES,
  RATE_LIMIT_PERIODS,
  REDIRECT_STATUSES,
  RETRY_ON,
  type ConsumerInput,
  type CredentialInput,
  type JwtProviderInput,
  type RateLimitPolicyInput,
  type RouteInput,
  type UpstreamInput,
} from '../../control-plane/src/model/index.ts';
import type { StateInput } from './gateway.ts';

export interface ArbitraryOptions {
  /** A real CA certificate (PEM) for tls.verify.ca_pem. */
  caPem: string;
  /** Endpoints only on loopback IPs: for live Envoys, which connect to them (health checks) and resolve names. */
  loopbackOnly?: boolean;
}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ weight, arbitrary });

// ---- text ------------------------------------------------------------------------

const ASCII_WORD = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** Multi-byte characters: 2-byte (é), 3-byte (日, €), 4-byte (emoji, astral CJK). */
const MULTI_BYTE = ['é', 'ß', '日', '本', '語', '€', '😀', '𝄞', '𠀋'] as const;

function chars(from: string | readonly string[]): fc.Arbitrary<string> {
  return fc.constantFrom(...(typeof from === 'string' ? Array.from(from) : from));
}

function repeatOf(unit: fc.Arbitrary<string>, length: number): fc.Arbitrary<string> {
  return unit.map((u) => u.repeat(length));
}

/** As many copies of one multi-byte character as fit in `maxBytes` of UTF-8: at a byte limit, under a character limit. */
function fillBytes(maxBytes: number): fc.Arbitrary<string> {
  return chars(MULTI_BYTE).map((u) => u.repeat(Math.floor(maxBytes / Buffer.byteLength(u, 'utf8'))));
}

/**
 * Free text of at most `max` characters: empty, short, exactly `max` ASCII
 * characters, `max` multi-byte characters (up to 4x the bytes), arbitrary
 * Unicode, and rarely control characters (NUL, lone surrogates included).
 */
export function text(max: number, opts: { min?: number } = {}): fc.Arbitrary<string> {
  const min = opts.min ?? 0;
  const options: fc.WeightedArbitrary<string>[] = [
    w(60, fc.string({ unit: chars(ASCII_WORD + '-_. /:'), minLength: Math.max(min, 1), maxLength: Math.min(max, 24) })),
    w(4, fc.string({ unit: 'grapheme', minLength: min, maxLength: Math.min(max, 16) })),
    w(2, repeatOf(chars('ax'), max)),
    w(1, repeatOf(chars(MULTI_BYTE), max)),
    w(2, fillBytes(max)),
    w(3, fc.string({ unit: chars(MULTI_BYTE), minLength: Math.max(min, 1), maxLength: Math.min(max, 40) })),
    w(1, fc.string({ unit: 'binary', minLength: Math.max(min, 1), maxLength: Math.min(max, 8) })),
  ];
  if (min === 0) options.push(w(2, fc.constant('')));
  return fc.oneof(...options);
}

/** A value drawn from a character set, at lengths min..max with both ends likely. */
function tokenOf(alphabet: string, min: number, max: number): fc.Arbitrary<string> {
  return fc.oneof(
    w(6, fc.string({ unit: chars(alphabet), minLength: min, maxLength: Math.min(max, Math.max(min, 12)) })),
    w(1, fc.string({ unit: chars(alphabet), minLength: max, maxLength: max })),
    w(1, fc.string({ unit: chars(alphabet), minLength: min, maxLength: min })),
  );
}

/** An integer in [min, max], with the bounds and their neighbours likely. */
export function boundedInt(min: number, max: number): fc.Arbitrary<number> {
  const edges = [min, max, Math.min(min + 1, max), Math.max(max - 1, min)];
  return fc.oneof(w(3, fc.integer({ min, max })), w(2, fc.constantFrom(...edges)));
}

// ---- names ----------------------------------------------------------------------

const LABEL_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A DNS label of 1..max chars: letters/digits, inner hyphens. */
function label(max = 63): fc.Arbitrary<string> {
  return fc
    .tuple(chars(LABEL_CHARS), fc.string({ unit: chars(LABEL_CHARS + '-'), maxLength: Math.max(0, max - 2) }), chars(LABEL_CHARS))
    .map(([first, middle, last]) => (middle.length === 0 && max === 1 ? first : `${first}${middle}${last}`.slice(0, max)))
    .map((value) => value.replace(/-+$/, '') || 'a');
}

/** Object names (NameSchema): short, and at the 63-character limit. */
export const name: fc.Arbitrary<string> = fc.oneof(w(6, label(12)), w(1, label(63).map((l) => (l + 'x'.repeat(63)).slice(0, 63))), w(1, label(1)));

/** DNS names; the last label starts with a letter, as top-level domains do (an all-digit one reads as an IPv4 address). */
const hostname: fc.Arbitrary<string> = fc.oneof(
  w(200, fc.tuple(fc.array(label(12), { maxLength: 3 }), chars('abcdefghijklmnopqrstuvwxyz'), label(11)).map(([labels, letter, last]) => [...labels, letter + last].join('.'))),
  // 253 characters: four 63-character labels minus the tail.
  w(4, fc.constant([63, 63, 63, 61].map((n, i) => String.fromCharCode(97 + i).repeat(n)).join('.'))),
  // Looks like an IPv4 address, is not one (defect 3's shapes), or is all digits.
  w(1, fc.constantFrom('999.1.1.1', '01.2.3.4', '1.2.3.256', '1.2.3', '123', '0x7f.0.0.1')),
);

const ipv4 = fc.tuple(boundedInt(0, 255), boundedInt(0, 255), boundedInt(0, 255), boundedInt(0, 255)).map((parts) => parts.join('.'));
const ipv6 = fc.oneof(fc.ipV6(), fc.constantFrom('::1', '::', 'fe80::1', '::ffff:127.0.0.1', '2001:db8::1'));
const loopbackIp = fc.oneof(boundedInt(1, 254).map((n) => `127.0.0.${n}`), fc.constant('::1'));

const HEADER_TOKEN = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-";

/** Lowercase header names (token characters), up to 256 characters; some protected or pseudo names. */
export const headerName: fc.Arbitrary<string> = fc.oneof(
  w(30, fc.string({ unit: chars('abcdefghijklmnopqrstuvwxyz-'), minLength: 1, maxLength: 16 }).map((n) => `x-${n}`)),
  w(2, tokenOf(HEADER_TOKEN, 1, 256)),
  w(1, fc.constantFrom('host', 'content-length', 'authorization', 'te', 'connection', 'transfer-encoding', 'cookie', 'x-sluice-consumer', 'x-user-id', ':path', 'user-agent')),
);

const COOKIE_TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-";
const cookieName = fc.oneof(w(6, tokenOf(COOKIE_TOKEN, 1, 16)), w(1, tokenOf(COOKIE_TOKEN, 256, 256)));

/** Names a route may add or remove: mostly free ones, rarely a protected or identity header. */
const mutableHeaderName: fc.Arbitrary<string> = fc.oneof(
  w(40, fc.string({ unit: chars('abcdefghijklmnopqrstuvwxyz-'), minLength: 1, maxLength: 16 }).map((n) => `x-${n}`)),
  w(2, tokenOf(HEADER_TOKEN, 1, 256)),
  w(1, fc.constantFrom('host', 'authorization', 'cookie', 'x-sluice-consumer', ':path', 'user-agent')),
);

/** Header values: text up to 8,192 characters (so up to 32 KiB of UTF-8). */
const headerValue = fc.oneof(w(300, text(64)), w(12, fillBytes(8192)), w(6, repeatOf(chars('ax'), 8192)), w(1, repeatOf(chars(MULTI_BYTE), 8192)));

// ---- regexes from a small grammar ----------------------------------------------------

const REGEX_LITERALS = ['a', 'b', 'z', '0', '9', '_', '-', '/', ' ', 'é', '日', '😀', 'Ω'] as const;
const REGEX_ESCAPES = ['\\.', '\\*', '\\+', '\\?', '\\(', '\\)', '\\[', '\\]', '\\{', '\\}', '\\|', '\\\\', '\\/', '\\-', '\\^', '\\$', '\\t', '\\n', '\\x41', '\\x{1F600}', '\\101', '\\f', '\\v', '\\a'] as const;
const REGEX_CLASSES = ['\\d', '\\D', '\\w', '\\W', '\\s', '\\S', '.', '[a-z]', '[^/]', '[0-9A-Fa-f]', '[[:alpha:]]', '[\\d\\s]', '[é-ü]', '[日本]', '[-a]', '[a\\-z]'] as const;
const REGEX_UNICODE_CLASSES = ['\\pL', '\\PN', '\\p{Greek}', '\\p{Han}', '\\P{Lu}', '[\\p{L}\\d]'] as const;
const REGEX_ANCHORS = ['^', '$', '\\b', '\\B', '\\A', '\\z'] as const;
/** Escapes and constructs JavaScript accepts and RE2 refuses (defect 1): the model must refuse them. */
const REGEX_RISKY = ['\\y', '\\cA', '\\Z', '\\e', '\\k<a>', '\\G', '\\R', '\\h', '\\N', '\\u0041', '\\é', '[\\b]', '[\\1]', '[a-\\d]', '(?=a)', '(?!a)', '(?<=a)', '(a)\\1', '\\X', '(?<n>a)'] as const;
const QUANTIFIERS = ['', '', '', '*', '+', '?', '*?', '+?', '??'] as const;

/** Counts: mostly small, sometimes at RE2's bound of 1,000 (which the program-size check must weigh). */
const count = fc.oneof(w(80, fc.integer({ min: 0, max: 5 })), w(1, boundedInt(0, 1000)));

const repetition: fc.Arbitrary<string> = fc.oneof(
  w(12, fc.constantFrom(...QUANTIFIERS)),
  w(1, count.map((n) => `{${n}}`)),
  w(1, count.map((n) => `{${n},}`)),
  w(1, fc.tuple(count, count).map(([a, b]) => `{${Math.min(a, b)},${Math.max(a, b)}}`)),
);

const simpleAtom: fc.Arbitrary<string> = fc.oneof(w(6, chars(REGEX_LITERALS)), w(2, chars(REGEX_ESCAPES)), w(3, chars(REGEX_CLASSES)));

/** A quantified atom, or an anchor (anchors take no repetition). */
function items(atom: fc.Arbitrary<string>, maxLength: number): fc.Arbitrary<string> {
  const item = fc.oneof(w(12, fc.tuple(atom, repetition).map(([a, rep]) => a + rep)), w(1, chars(REGEX_ANCHORS)));
  return fc.array(item, { minLength: 1, maxLength }).map((parts) => parts.join(''));
}

function alternation(seq: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(w(4, seq), w(1, fc.array(seq, { minLength: 2, maxLength: 3 }).map((seqs) => seqs.join('|'))));
}

/** Groups of every kind around an inner regex. */
function group(inner: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(
    w(3, inner.map((r) => `(${r})`)),
    w(2, inner.map((r) => `(?:${r})`)),
    w(1, fc.tuple(fc.constantFrom('i', 's', 'm', 'U', 'is', '-i'), inner).map(([flags, r]) => `(?${flags}:${r})`)),
    w(1, fc.tuple(fc.string({ unit: chars('abcxyz'), minLength: 1, maxLength: 8 }), inner).map(([n, r]) => `(?P<${n}>${r})`)),
  );
}

/**
 * Regexes in RE2 syntax from a small grammar, two levels deep: literals (ASCII
 * and multi-byte), escapes, classes, anchors, repetitions (lazy too, counts up to
 * RE2's 1,000), alternation and every kind of group, sometimes with a leading flag.
 */
export const regex: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(w(8, fc.constant('')), w(1, fc.constantFrom('(?i)', '(?s)', '^', '(?U)'))),
    alternation(items(fc.oneof(w(5, simpleAtom), w(1, group(alternation(items(simpleAtom, 3))))), 4)),
  )
  .map(([head, body]) => head + body);

/** A grammar regex with one construct spliced in (before, after, or as an alternative). */
function splicedRegex(constructs: readonly string[]): fc.Arbitrary<string> {
  return fc.tuple(regex, chars(constructs), fc.nat(2)).map(([base, construct, where]) => [construct + base, base + construct, `${base}|${construct}`][where]!);
}

/**
 * Regexes for every regex field: mostly from the grammar; sometimes with a
 * construct RE2 refuses though JavaScript takes it, or a Unicode class; and long
 * literal runs (multi-byte) up to the 1,024-character limit.
 */
export const edgeRegex: fc.Arbitrary<string> = fc.oneof(
  w(80, regex),
  w(1, splicedRegex(REGEX_RISKY)),
  w(1, splicedRegex(REGEX_UNICODE_CLASSES)),
  w(1, fc.tuple(fc.constantFrom('/', '^/', ''), fc.constantFrom('日本語', 'ab', '😀', 'é'), boundedInt(1, 400)).map(([head, unit, n]) => (head + unit.repeat(n)).slice(0, 1024))),
  w(1, fc.constantFrom('.*', '', '^$', '(.*)', '[^/]+/[^/]+', '(?i)/API/v[0-9]+/.*')),
);

// ---- paths -------------------------------------------------------------------------

const PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%";
/** URL paths: '/' + path characters, with multi-byte and percent-escapes, up to 1,024 characters. */
export const path: fc.Arbitrary<string> = fc.oneof(
  w(6, fc.string({ unit: chars(PATH_CHARS), maxLength: 24 }).map((p) => `/${p}`)),
  w(1, fc.constant('/')),
  w(1, repeatOf(chars('a/'), 1023).map((p) => `/${p}`)),
  w(1, fc.string({ unit: chars([...MULTI_BYTE, 'a', '/']), maxLength: 1023 }).map((p) => `/${p}`)),
  w(1, fc.constantFrom('/%00', '/a%2Fb', '/%zz', '/\u0001', '/a\u007f', '/\udfff', '/..', '/./a', '//', '/a;b', '/a\\b')),
);

// ---- upstream ------------------------------------------------------------------------

function endpoint(opts: ArbitraryOptions): fc.Arbitrary<UpstreamInput['endpoints'][number]> {
  const host = opts.loopbackOnly ? loopbackIp : fc.oneof(w(4, ipv4), w(2, ipv6), w(3, hostname));
  return fc.record({ host, port: boundedInt(1, 65535), weight: boundedInt(1, 128) }, { requiredKeys: ['host', 'port'] });
}

/** A PEM block with valid markers around garbage (defect 4): the model must refuse it. */
const GARBAGE_PEM = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';

export function upstream(opts: ArbitraryOptions): fc.Arbitrary<UpstreamInput> {
  const lb = fc.oneof(
    fc.record({ lb_policy: fc.constantFrom(...LB_POLICIES.filter((p) => p !== 'ring_hash')) }, { requiredKeys: [] }),
    fc.record({
      lb_policy: fc.constant('ring_hash' as const),
      hash_key: fc.oneof(fc.record({ header: headerName }), fc.record({ cookie: cookieName }), fc.constant({ source_ip: true as const })),
    }),
  );
  return fc
    .tuple(
      fc.record(
        {
          name,
          endpoints: fc.uniqueArray(endpoint(opts), { minLength: 1, maxLength: 4, selector: (e) => `${e.host.toLowerCase()}:${e.port}` }),
          connect_timeout_ms: boundedInt(1, 60_000),
          circuit_breakers: fc.record(
            {
              max_connections: boundedInt(1, 1_000_000),
              max_pending_requests: boundedInt(1, 1_000_000),
              max_requests: boundedInt(1, 1_000_000),
              max_retries: boundedInt(0, 1_000_000),
            },
            { requiredKeys: [] },
          ),
          outlier_detection: fc.record(
            {
              consecutive_5xx: boundedInt(1, 1000),
              interval_ms: boundedInt(1, 3_600_000),
              base_ejection_time_ms: boundedInt(1, 3_600_000),
              max_ejection_percent: boundedInt(0, 100),
            },
            { requiredKeys: [] },
          ),
          health_check: fc.record(
            {
              path,
              interval_ms: boundedInt(1, 3_600_000),
              timeout_ms: boundedInt(1, 3_600_000),
              healthy_threshold: boundedInt(1, 100),
              unhealthy_threshold: boundedInt(1, 100),
              expected_statuses: fc.array(boundedInt(100, 599), { minLength: 1, maxLength: 6 }),
            },
            { requiredKeys: ['path'] },
          ),
          tls: fc.record(
            {
              sni: hostname,
              verify: fc.record({ ca_pem: fc.oneof(w(200, fc.constant(opts.caPem)), w(1, fc.constant(GARBAGE_PEM))) }, { requiredKeys: [] }),
            },
            { requiredKeys: [] },
          ),
          protocol: fc.constantFrom('http1' as const, 'http2' as const),
        },
        { requiredKeys: ['name', 'endpoints'] },
      ),
      lb,
    )
    .map(([base, balancing]) => ({ ...base, ...balancing }));
}

// ---- route ----------------------------------------------------------------------------

/** Route fields that refer to other objects, drawn as indices and resolved against the State's names. */
export interface Refs {
  upstreams: readonly string[];
  policies: readonly string[];
  providers: readonly string[];
}

type Pick1 = (refs: Refs) => string;

/** Picks the i-th upstream (mod the count), so references shrink with the State. */
const upstreamRef: fc.Arbitrary<Pick1> = fc.nat(15).map((i) => (refs: Refs) => refs.upstreams[i % refs.upstreams.length]!);

const headerMatch: fc.Arbitrary<NonNullable<NonNullable<RouteInput['match']>['headers']>[number]> = fc
  .tuple(
    headerName,
    fc.oneof(
      fc.record({ exact: headerValue }),
      fc.record({ prefix: headerValue.filter((v) => v.length > 0) }),
      fc.record({ regex: edgeRegex }),
      fc.constant({ present: true as const }),
    ),
    fc.option(fc.boolean(), { nil: undefined }),
  )
  .map(([n, kind, invert]) => ({ name: n, ...kind, ...(invert === undefined ? {} : { invert }) }));

const QUERY_NAME_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_-.[]%+é日';
const queryMatch = fc
  .tuple(
    fc.oneof(w(120, tokenOf(QUERY_NAME_CHARS, 1, 12)), w(1, tokenOf(QUERY_NAME_CHARS, 256, 256)), w(2, tokenOf('abc_-.[]', 256, 256))),
    fc.oneof(fc.record({ exact: text(1024) }), fc.record({ regex: edgeRegex }), fc.constant({ present: true as const })),
  )
  .map(([n, kind]) => ({ name: n, ...kind }));

const routeMatch = fc.record(
  {
    path: fc.oneof(fc.record({ prefix: path }), fc.record({ exact: path }), fc.record({ regex: edgeRegex })),
    methods: fc.uniqueArray(fc.constantFrom(...HTTP_METHODS), { minLength: 1, maxLength: 4 }),
    headers: fc.array(headerMatch, { maxLength: 3 }),
    query: fc.array(queryMatch, { maxLength: 3 }),
  },
  { requiredKeys: ['path'] },
);

type ActionInput = RouteInput['action'];
type ResolveAction = (refs: Refs) => ActionInput;

/** Split weights summing to 100 (zeros and a single 100 included). */
const splitWeights: fc.Arbitrary<number[]> = fc
  .array(fc.nat(100), { minLength: 0, maxLength: 15 })
  .map((cuts) => {
    const sorted = [0, ...cuts.sort((a, b) => a - b), 100];
    return sorted.slice(1).map((cut, i) => cut - sorted[i]!);
  });

const COOKIE_VALUE_CHARS = "!#$%&'()*+-./0123456789:<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";

const action: fc.Arbitrary<ResolveAction> = fc.oneof(
  w(4, upstreamRef.map((pick): ResolveAction => (refs) => ({ upstream: pick(refs) }))),
  w(
    2,
    fc.tuple(splitWeights, fc.nat(15)).map(([weights, offset]): ResolveAction => (refs) => {
      const count = Math.min(weights.length, refs.upstreams.length);
      const used = weights.slice(0, count);
      used[count - 1] = 100 - used.slice(0, count - 1).reduce((a, b) => a + b, 0);
      return { split: used.map((weight, i) => ({ upstream: refs.upstreams[(offset + i) % refs.upstreams.length]!, weight })) };
    }),
  ),
  w(
    2,
    fc
      .record(
        {
          primary: fc.nat(15),
          weight: boundedInt(0, 100),
          header: fc.record({ name: headerName, value: headerValue.filter((v) => v.length > 0) }),
          cookie: fc.record({ name: cookieName, value: fc.oneof(w(16, tokenOf(COOKIE_VALUE_CHARS, 1, 16)), w(1, tokenOf(COOKIE_VALUE_CHARS, 1024, 1024)), w(2, tokenOf(COOKIE_VALUE_CHARS, 70, 70))) }),
        },
        { requiredKeys: ['primary'] },
      )
      .map((c): ResolveAction => (refs) => {
        const n = refs.upstreams.length;
        // A canary needs two upstreams; with one, the route forwards to it.
        if (n < 2) return { upstream: refs.upstreams[0]! };
        const primary = refs.upstreams[c.primary % n]!;
        const canary = refs.upstreams[(c.primary + 1) % n]!;
        return { canary: { primary, canary, ...(c.weight === undefined ? {} : { weight: c.weight }), ...(c.header ? { header: c.header } : {}), ...(c.cookie ? { cookie: c.cookie } : {}) } };
      }),
  ),
  w(1, fc.record({ status: boundedInt(200, 599), body: fc.oneof(w(40, text(4096)), w(6, fillBytes(4096)), w(1, repeatOf(chars('😀'), 1025))) }, { requiredKeys: ['status'] }).map((d): ResolveAction => () => ({ direct_response: d }))),
  w(
    1,
    fc
      .record(
        {
          scheme: fc.constantFrom('http' as const, 'https' as const),
          host: hostname,
          path: fc.oneof(path, path.map((p) => `${p}?a=1&b=%20`)),
          status: fc.constantFrom(...REDIRECT_STATUSES),
        },
        { requiredKeys: [] },
      )
      .map((r): ResolveAction => () => ({ redirect: r.scheme || r.host || r.path ? r : { ...r, path: '/' } })),
  ),
);

const rewrite = fc.oneof(
  fc.record({ prefix: path, host: fc.oneof(hostname, hostname.map((h) => `${h}:8080`), fc.constant('a:65535')) }, { requiredKeys: [] }),
  fc
    .tuple(edgeRegex, fc.oneof(w(10, text(1024)), w(1, fc.constantFrom('\\1', '/x/\\1/\\2', '\\0', '$1', ''))))
    .map(([pattern, substitution]) => ({ regex: { pattern, substitution } })),
);

const retries = fc
  .record(
    {
      on: fc.uniqueArray(fc.constantFrom(...RETRY_ON), { minLength: 1, maxLength: 5 }),
      count: boundedInt(1, 10),
      per_try_timeout_ms: boundedInt(1, 3_600_000),
      backoff_base_ms: boundedInt(1, 60_000),
      backoff_max_ms: boundedInt(1, 3_600_000),
    },
    { requiredKeys: ['on'] },
  )
  .map((r) => {
    // backoff_max_ms needs backoff_base_ms and must not be below it.
    if (r.backoff_max_ms === undefined) return r;
    const base = r.backoff_base_ms ?? 1;
    return { ...r, backoff_base_ms: base, backoff_max_ms: Math.max(base, r.backoff_max_ms) };
  });

const headerMutation = fc.record(
  {
    add: fc.array(fc.record({ name: mutableHeaderName, value: headerValue, append: fc.boolean() }, { requiredKeys: ['name', 'value'] }), { maxLength: 4 }),
    remove: fc.uniqueArray(mutableHeaderName, { maxLength: 4 }),
  },
  { requiredKeys: [] },
);

const scope = fc.oneof(w(6, tokenOf('abcdefghijklmnopqrstuvwxyz:._-/', 1, 16)), w(1, tokenOf('abcdefghijklmnopqrstuvwxyz:._-/[]{}!~', 128, 128)));

type ResolveAuth = (refs: Refs) => RouteInput['auth'];

const auth: fc.Arbitrary<ResolveAuth> = fc
  .record({ mode: fc.constantFrom(...AUTH_MODES), scopes: fc.uniqueArray(scope, { maxLength: 4 }), providers: fc.option(fc.nat(7), { nil: undefined }) }, { requiredKeys: ['mode'] })
  .map((a): ResolveAuth => (refs) => {
    if (a.mode === 'none') return { mode: 'none' };
    // Mode jwt needs a provider in the State; without one, ask for 'any' instead.
    const mode = a.mode === 'jwt' && refs.providers.length === 0 ? 'any' : a.mode;
    const providers = a.providers !== undefined && refs.providers.length > 0 && (mode === 'jwt' || mode === 'any') ? { jwt_providers: [refs.providers[a.providers % refs.providers.length]!] } : {};
    return { mode, ...(a.scopes ? { scopes: a.scopes } : {}), ...providers };
  });

const corsOrigin = fc.oneof(
  w(4, fc.tuple(fc.constantFrom('https', 'http', 'app+x'), hostname, fc.option(boundedInt(1, 65535), { nil: undefined })).map(([s, h, p]) => `${s}://${h}${p === undefined ? '' : `:${p}`}`)),
  w(1, fc.constant('*')),
  w(2, edgeRegex.map((r) => ({ regex: r }))),
);

const cors = fc.record(
  {
    allow_origins: fc.array(corsOrigin, { minLength: 1, maxLength: 4 }),
    allow_methods: fc.uniqueArray(fc.constantFrom(...HTTP_METHODS), { maxLength: 4 }),
    allow_headers: fc.array(headerName, { maxLength: 4 }),
    expose_headers: fc.array(headerName, { maxLength: 4 }),
    max_age_s: boundedInt(0, 86_400),
    allow_credentials: fc.boolean(),
  },
  { requiredKeys: ['allow_origins'] },
);

/**
 * Route hosts: often from a small shared pool, so routes of one State overlap
 * (the same domain in several virtual hosts, '*' beside names), else any name.
 */
const hostPattern = fc.oneof(
  w(2, fc.constant('*')),
  w(4, fc.constantFrom('api.example.com', '*.example.com', 'example.com', 'a.b.example.com')),
  w(4, hostname),
  w(2, hostname.map((h) => `*.${h}`)),
);

export type ResolveRoute = (refs: Refs) => RouteInput;

export const route: fc.Arbitrary<ResolveRoute> = fc
  .record(
    {
      name,
      hosts: fc.uniqueArray(hostPattern, { minLength: 1, maxLength: 3 }),
      priority: boundedInt(-10_000, 10_000),
      match: routeMatch,
      action,
      mirror: fc.record({ upstream: upstreamRef, percent: boundedInt(0, 100) }, { requiredKeys: ['upstream'] }),
      rewrite,
      timeout_ms: boundedInt(0, 3_600_000),
      retries,
      request_headers: headerMutation,
      response_headers: headerMutation,
      auth,
      rate_limits: fc.uniqueArray(fc.nat(7), { maxLength: 3 }),
      cors,
    },
    { requiredKeys: ['name', 'match', 'action'] },
  )
  .map((r): ResolveRoute => (refs) => {
    const { action: pickAction, mirror, auth: pickAuth, rate_limits: limits, ...rest } = r;
    const resolved: RouteInput = { ...rest, action: pickAction(refs) };
    const forwarding = resolved.action.upstream !== undefined || resolved.action.split !== undefined || resolved.action.canary !== undefined;
    if (mirror) resolved.mirror = { upstream: mirror.upstream(refs), ...(mirror.percent === undefined ? {} : { percent: mirror.percent }) };
    if (pickAuth) resolved.auth = pickAuth(refs);
    if (limits && refs.policies.length > 0) resolved.rate_limits = [...new Set(limits.map((i) => refs.policies[i % refs.policies.length]!))];
    // Forwarding-only fields on a non-forwarding action are refused by the model
    // by design; drop them so those routes are admitted and judged.
    if (!forwarding) {
      delete resolved.mirror;
      delete resolved.rewrite;
      delete resolved.timeout_ms;
      delete resolved.retries;
      delete resolved.rate_limits;
    }
    // A prefix rewrite with a regex path match is refused by design. (Copied, not
    // deleted in place: fast-check reuses generated values while shrinking.)
    if (resolved.rewrite?.prefix !== undefined && resolved.match.path.regex !== undefined) {
      const { prefix: _prefix, ...others } = resolved.rewrite;
      resolved.rewrite = others;
    }
    return resolved;
  });

// ---- consumers, credentials, JWT providers, rate-limit policies -----------------------------

export const consumer: fc.Arbitrary<ConsumerInput> = fc.record(
  {
    name,
    tags: fc.uniqueArray(tokenOf('ABCabc0189._:/-', 1, 64), { maxLength: 4 }),
    metadata: fc.dictionary(text(64, { min: 1 }), text(1024), { maxKeys: 4 }),
  },
  { requiredKeys: ['name'] },
);

export type ResolveCredential = (consumers: readonly string[], providers: readonly string[]) => CredentialInput | undefined;

export const credential: fc.Arbitrary<ResolveCredential> = fc
  .record({
    name,
    consumer: fc.nat(7),
    jwt: fc.option(fc.record({ provider: fc.nat(7), subject: text(512, { min: 1 }) }), { nil: undefined }),
    expires_at: fc.option(
      fc.oneof(
        fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
        fc.constant('2030-01-01T00:00:00+05:30'),
      ),
      { nil: undefined },
    ),
  })
  .map((c): ResolveCredential => (consumers, providers) => {
    if (consumers.length === 0) return undefined;
    const owner = consumers[c.consumer % consumers.length]!;
    const expires = c.expires_at === undefined ? {} : { expires_at: c.expires_at };
    if (c.jwt && providers.length > 0) {
      return { name: c.name, consumer: owner, kind: 'jwt_subject', jwt: { provider: providers[c.jwt.provider % providers.length]!, subject: c.jwt.subject }, ...expires };
    }
    return { name: c.name, consumer: owner, kind: 'api_key', ...expires };
  });

const jwk = fc.oneof(
  fc.constant({ kty: 'RSA', n: 'sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw', e: 'AQAB', alg: 'RS256', kid: 'k1' }),
  fc.record({ kty: fc.constantFrom('EC', 'OKP', 'oct'), kid: text(64, { min: 1 }) }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 16 }), fc.integer(), fc.boolean()), { maxKeys: 4 }).map((extra) => ({ ...extra, kty: 'RSA' })),
);

export const jwtProvider: fc.Arbitrary<JwtProviderInput> = fc
  .tuple(
    fc.record(
      {
        name,
        issuer: text(1024, { min: 1 }),
        audiences: fc.array(text(1024, { min: 1 }), { maxLength: 3 }),
        algorithms: fc.uniqueArray(fc.constantFrom(...JWT_ALGORITHMS), { minLength: 1, maxLength: 3 }),
        clock_skew_s: boundedInt(0, 300),
        claims_to_headers: fc.uniqueArray(fc.record({ claim: fc.oneof(tokenOf('abcdefghijklmnopqrstuvwxyz_.', 1, 16), tokenOf('a.b', 256, 256)), header: headerName }), {
          maxLength: 3,
          selector: (entry) => entry.header,
        }),
      },
      { requiredKeys: ['name', 'issuer'] },
    ),
    fc.oneof(
      fc.record({ jwks: fc.record({ keys: fc.array(jwk, { minLength: 1, maxLength: 3 }) }) }),
      fc.constantFrom('https://issuer.example/.well-known/jwks.json', 'http://127.0.0.1:8080/jwks').map((uri) => ({ jwks_uri: uri })),
    ),
  )
  .map(([base, keys]) => ({ ...base, ...keys }));

const rateLimitKeyPart = fc.oneof(fc.constantFrom('route' as const, 'consumer' as const, 'client_ip' as const), headerName.map((header) => ({ header })));

export const rateLimitPolicy: fc.Arbitrary<RateLimitPolicyInput> = fc.record(
  {
    name,
    key: fc.uniqueArray(rateLimitKeyPart, { minLength: 1, maxLength: 4, selector: (part) => (typeof part === 'string' ? part : `header:${part.header}`) }),
    limit: fc.record({ requests: boundedInt(1, 1_000_000_000), per: fc.constantFrom(...RATE_LIMIT_PERIODS) }),
    burst: boundedInt(0, 1_000_000_000),
    algorithm: fc.constantFrom('sliding_window' as const, 'fixed_window' as const),
  },
  { requiredKeys: ['name', 'key', 'limit'] },
);

// ---- whole States --------------------------------------------------------------------------

const byName = { selector: (item: { name: string }) => item.name };

/** A whole State input whose references resolve (names drawn unique per kind). */
export function stateArbitrary(opts: ArbitraryOptions): fc.Arbitrary<StateInput> {
  return fc
    .record({
      upstreams: fc.uniqueArray(upstream(opts), { minLength: 1, maxLength: 4, ...byName }),
      routes: fc.array(route, { minLength: 1, maxLength: 4 }),
      consumers: fc.uniqueArray(consumer, { maxLength: 2, ...byName }),
      credentials: fc.array(credential, { maxLength: 2 }),
      jwt_providers: fc.uniqueArray(jwtProvider, { maxLength: 2, ...byName }),
      rate_limit_policies: fc.uniqueArray(rateLimitPolicy, { maxLength: 2, ...byName }),
    })
    .map((s) => {
      const refs: Refs = { upstreams: s.upstreams.map((u) => u.name), policies: s.rate_limit_policies.map((p) => p.name), providers: s.jwt_providers.map((p) => p.name) };
      const routeNames = new Set<string>();
      const routes = s.routes.map((resolve) => resolve(refs)).filter((r) => !routeNames.has(r.name) && routeNames.add(r.name));
      const consumerNames = s.consumers.map((c) => c.name);
      const credentialNames = new Set<string>();
      const credentials = s.credentials
        .map((resolve) => resolve(consumerNames, refs.providers))
        .filter((c): c is CredentialInput => c !== undefined && !credentialNames.has(c.name) && Boolean(credentialNames.add(c.name)));
      return { revision: 1, upstreams: s.upstreams, routes, consumers: s.consumers, credentials, jwt_providers: s.jwt_providers, rate_limit_policies: s.rate_limit_policies };
    });
}
