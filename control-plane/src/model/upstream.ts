// Upstream: a named group of endpoints plus how to balance, protect and reach them.
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { CookieNameSchema, EndpointHostSchema, HOUR_MS, HeaderNameSchema, HostnameSchema, NameSchema, PathSchema, PortSchema, millis, oneOf, uniqueBy } from './common.ts';

export const EndpointSchema = z
  .object({
    host: EndpointHostSchema,
    port: PortSchema,
    weight: z.int().min(1).max(128).default(1),
  })
  .strict();

export const LB_POLICIES = ['round_robin', 'least_request', 'ring_hash', 'random'] as const;

/** What ring_hash hashes on: a request header, a cookie, or the client address. */
export const HashKeySchema = z
  .object({
    header: HeaderNameSchema.optional(),
    cookie: CookieNameSchema.optional(),
    source_ip: z.literal(true).optional(),
  })
  .strict()
  .superRefine(oneOf(['header', 'cookie', 'source_ip']));

export const CircuitBreakersSchema = z
  .object({
    max_connections: z.int().min(1).max(1_000_000).optional(),
    max_pending_requests: z.int().min(1).max(1_000_000).optional(),
    max_requests: z.int().min(1).max(1_000_000).optional(),
    max_retries: z.int().min(0).max(1_000_000).optional(),
  })
  .strict();

export const OutlierDetectionSchema = z
  .object({
    consecutive_5xx: z.int().min(1).max(1000).optional(),
    interval_ms: millis(HOUR_MS).optional(),
    base_ejection_time_ms: millis(HOUR_MS).optional(),
    max_ejection_percent: z.int().min(0).max(100).optional(),
  })
  .strict();

export const HealthCheckSchema = z
  .object({
    path: PathSchema,
    interval_ms: millis(HOUR_MS).default(10_000),
    timeout_ms: millis(HOUR_MS).default(1_000),
    healthy_threshold: z.int().min(1).max(100).default(1),
    unhealthy_threshold: z.int().min(1).max(100).default(3),
    /** Status codes counted as healthy; Envoy's default is 200 only. */
    expected_statuses: z.array(z.int().min(100).max(599)).min(1).optional(),
  })
  .strict();

/** Bounds on a CA bundle: a handful of roots is normal; the system bundle is not meant to be pasted here. */
export const CA_PEM_MAX_CHARS = 65_536;
export const CA_PEM_MAX_CERTIFICATES = 32;

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END ([A-Z0-9 ]+)-----/g;

/**
 * Why a CA bundle would not load in Envoy, or undefined when it is fine. Every
 * block must be a CERTIFICATE whose base64 is exactly the DER of one X.509
 * certificate (node parses it, and re-encoding gives back the same bytes, so no
 * trailing garbage or odd encodings slip past), that certificate must be a CA
 * (basicConstraints CA:TRUE), and nothing but whitespace may sit between blocks
 * (a private key pasted here by mistake is refused, not shipped to the fleet).
 */
export function caBundleProblem(pem: string): string | undefined {
  const blocks = [...pem.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) return 'must be one or more PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)';
  if (blocks.length > CA_PEM_MAX_CERTIFICATES) return `at most ${CA_PEM_MAX_CERTIFICATES} certificates`;
  if (pem.replace(PEM_BLOCK, '').trim() !== '') return 'must contain only PEM certificates (found text outside the BEGIN/END blocks)';
  for (const [index, block] of blocks.entries()) {
    const problem = certificateBlockProblem(block[1]!, block[2]!, block[3]!);
    if (problem) return `certificate ${index + 1}: ${problem}`;
  }
  return undefined;
}

function certificateBlockProblem(beginLabel: string, body: string, endLabel: string): string | undefined {
  if (beginLabel !== 'CERTIFICATE' || endLabel !== 'CERTIFICATE') return `a ${beginLabel} block is not a certificate`;
  const base64 = body.replace(/\s+/g, '');
  if (base64 === '') return 'empty block';
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(`-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`);
  } catch {
    return 'not a parsable X.509 certificate';
  }
  if (certificate.raw.toString('base64') !== base64) return 'not a parsable X.509 certificate (extra or non-canonical data)';
  if (!certificate.ca) return `'${certificate.subject.replace(/\n/g, ', ').slice(0, 200)}' is not a CA certificate (basicConstraints CA:TRUE); give the CA that signed it`;
  return undefined;
}

export const CaPemSchema = z
  .string()
  .max(CA_PEM_MAX_CHARS)
  .superRefine((pem, ctx) => {
    if (pem.length > CA_PEM_MAX_CHARS) return; // already refused by max(); don't parse it
    const problem = caBundleProblem(pem);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/**
 * TLS to the upstream. Present means encrypted AND verified, unless
 * `insecure_skip_verify` says otherwise:
 *
 * - trust: `verify.ca_pem` when given, else the system CA bundle of the Envoy host;
 * - name: `sni` when given; else each endpoint's own name (DNS SAN for a hostname,
 *   IP SAN for an IP endpoint). When every endpoint has the same hostname it is
 *   also sent as SNI; otherwise no SNI is sent unless `sni` is set.
 *
 * So `tls: {}` and `tls: {verify: {}}` mean the same: system roots plus the name
 * check. `insecure_skip_verify: true` turns both off (encryption only, any
 * certificate, including a self-signed one or a stranger's, is accepted); it is
 * for tests and migrations, and cannot be combined with `verify`.
 * TODO(admin): say so loudly where it is set: a warning in the write's response and the admin log.
 */
export const UpstreamTlsSchema = z
  .object({
    /** Server name sent in the TLS handshake; the certificate must carry it (DNS SAN) unless verification is skipped. */
    sni: HostnameSchema.optional(),
    /** How to verify the server certificate. Optional: verification is on whenever `tls` is present. */
    verify: z.object({ ca_pem: CaPemSchema.optional() }).strict().optional(),
    /** Accept any server certificate: no trust chain, no name check. Loud on purpose; only `true` is accepted. */
    insecure_skip_verify: z.literal(true).optional(),
  })
  .strict()
  .superRefine((tls, ctx) => {
    if (tls.insecure_skip_verify && tls.verify) {
      ctx.addIssue({ code: 'custom', path: ['insecure_skip_verify'], message: 'insecure_skip_verify cannot be combined with verify: remove one of them' });
    }
  });

export const UpstreamSchema = z
  .object({
    name: NameSchema,
    endpoints: z
      .array(EndpointSchema)
      .min(1)
      .max(1000)
      .superRefine(uniqueBy((e) => `${e.host.toLowerCase()}:${e.port}`, 'endpoint')),
    lb_policy: z.enum(LB_POLICIES).default('round_robin'),
    /** Required with ring_hash, refused otherwise. */
    hash_key: HashKeySchema.optional(),
    connect_timeout_ms: millis(60_000).default(5_000),
    circuit_breakers: CircuitBreakersSchema.optional(),
    outlier_detection: OutlierDetectionSchema.optional(),
    health_check: HealthCheckSchema.optional(),
    tls: UpstreamTlsSchema.optional(),
    protocol: z.enum(['http1', 'http2']).default('http1'),
  })
  .strict()
  .superRefine((upstream, ctx) => {
    if (upstream.lb_policy === 'ring_hash' && !upstream.hash_key) {
      ctx.addIssue({ code: 'custom', path: ['hash_key'], message: 'ring_hash needs a hash_key (header, cookie or source_ip)' });
    }
    if (upstream.lb_policy !== 'ring_hash' && upstream.hash_key) {
      ctx.addIssue({ code: 'custom', path: ['hash_key'], message: 'hash_key applies only to lb_policy ring_hash' });
    }
  });

export type Upstream = z.infer<typeof UpstreamSchema>;
export type UpstreamInput = z.input<typeof UpstreamSchema>;
export type Endpoint = z.infer<typeof EndpointSchema>;
export type HashKey = z.infer<typeof HashKeySchema>;
export type UpstreamTls = z.infer<typeof UpstreamTlsSchema>;
