// Upstream: a named group of endpoints plus how to balance, protect and reach them.
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

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/;

export const UpstreamTlsSchema = z
  .object({
    /** Server name sent in the TLS handshake, and checked against the certificate when verifying. */
    sni: HostnameSchema.optional(),
    /** Verify the server certificate: against `ca_pem` when given, else the system roots. Absent: encrypt only. */
    verify: z
      .object({ ca_pem: z.string().max(65536).regex(PEM_CERTIFICATE, 'must be PEM certificate(s)').optional() })
      .strict()
      .optional(),
  })
  .strict();

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
