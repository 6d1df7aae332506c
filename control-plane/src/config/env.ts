// Every control-plane setting, read from environment variables and validated
// once at startup. The rest of the code receives a typed Config and never reads
// process.env itself, so a typo fails fast with a message naming the variable.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ROUTE_STATS_MODES, type RouteStatsMode } from '../translate/options.ts';
import { xdsTransportSchema, type XdsTransportConfig } from './xds-transport.ts';

/** Repository root (this file is control-plane/src/config/env.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/** XDS_TLS_* and the xDS port's bounds come from ./xds-transport.ts. */
export interface Config extends XdsTransportConfig {
  /** External Postgres; undefined means "run embedded Postgres under dataDir". */
  databaseUrl: string | undefined;
  /** Absolute folder for local state (embedded Postgres lives in `<dataDir>/postgres`). */
  dataDir: string;
  /** Port for embedded Postgres; undefined means "any free loopback port". */
  postgresPort: number | undefined;
  adminHost: string;
  adminPort: number;
  xdsHost: string;
  xdsPort: number;
  /** Address and port every Envoy's gateway listener binds (translated into the Listener). */
  gatewayAddress: string;
  gatewayPort: number;
  /** GATEWAY_* edge limits that were set; the rest keep translate/'s EDGE_DEFAULTS. */
  gatewayEdge: GatewayEdgeSettings;
  /** First admin token to create at start when none exists (write role); undefined: none. */
  bootstrapToken: string | undefined;
  authzHost: string;
  authzPort: number;
  /**
   * Where Envoys dial the authz service, when not where it listens: a Service
   * name in front of every replica, so an Envoy keeps its checks when the
   * replica that configured it dies. Every replica must advertise the same.
   */
  authzAdvertise: { host?: string; port?: number };
  /** How long Envoy waits for the authz service before the route's auth.on_error applies. */
  authzTimeoutMs: number;
  ratelimitHost: string;
  ratelimitPort: number;
  /** Where Envoys dial the rate-limit service, when not where it listens (as authzAdvertise). */
  ratelimitAdvertise: { host?: string; port?: number };
  /** Envoy's deadline for the rate-limit service (RATELIMIT_TIMEOUT_MS). */
  ratelimitTimeoutMs: number;
  /** Redis for rate-limit counters; undefined means in-memory counters. */
  redisUrl: string | undefined;
  /** HMAC key for API-key hashes; undefined means keys cannot be created. */
  secret: string | undefined;
  logLevel: LogLevel;
  /** Gateway access log (GATEWAY_ACCESS_LOG_PATH): stdout unless a file path is set; undefined when 'off'. */
  gatewayAccessLog: { to: 'stdout' } | { to: 'file'; path: string } | undefined;
  /** OTLP/gRPC collector for Envoy's spans (GATEWAY_OTLP_ADDRESS host:port); undefined: no export. */
  otlpCollector: { host: string; port: number } | undefined;
  /** Percent of requests without a client decision that are traced (GATEWAY_TRACE_SAMPLING_PERCENT). */
  traceSamplingPercent: number | undefined;
  /** Which routes get per-route upstream stats (GATEWAY_ROUTE_STATS; translate/options.ts ROUTE_STATS_MODES). */
  routeStats: RouteStatsMode;
  /** METRICS_PUBLIC=true: /metrics needs no token even when the admin API is not on loopback. */
  metricsPublic: boolean;
  /** SLUICE_SERVER_TIMING=true: admin responses carry a Server-Timing header per phase (admin/timing.ts; profiling aid). */
  serverTiming: boolean;
  /** Revision checkpoints and retention (SLUICE_REVISION_*, SLUICE_AUDIT_RETAIN_DAYS); see store/revision-history.ts. */
  revisionHistory: {
    checkpointEveryRevisions: number;
    checkpointEveryBytes: number;
    retainRevisions: number;
    retainMs: number;
    auditRetainMs: number;
  };
}

/** Overrides of the gateway listener's edge limits (same names as translate/'s EdgeOptions). */
export interface GatewayEdgeSettings {
  requestHeadersTimeoutMs?: number;
  streamIdleTimeoutMs?: number;
  requestTimeoutMs?: number;
  connectionIdleTimeoutMs?: number;
  maxRequestHeadersKb?: number;
  perConnectionBufferLimitBytes?: number;
  http2MaxConcurrentStreams?: number;
  http2InitialStreamWindowBytes?: number;
  http2InitialConnectionWindowBytes?: number;
  xffTrustedHops?: number;
}

/** Thrown by loadConfig; `message` has one line per bad variable. */
export class ConfigError extends Error {
  constructor(readonly issues: readonly { variable: string; problem: string }[]) {
    super(issues.map((i) => `${i.variable}: ${i.problem}`).join('\n'));
    this.name = 'ConfigError';
  }
}

// Variables whose values must never be echoed back in an error message.
const secretVariables = new Set(['SLUICE_SECRET', 'DATABASE_URL', 'REDIS_URL', 'SLUICE_BOOTSTRAP_TOKEN']);

// Compose files and shells often produce FOO= ; treat empty as unset.
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const port = z
  .string()
  .regex(/^\d{1,5}$/, { error: 'expected an integer port 1-65535' })
  .transform(Number)
  .refine((n) => n >= 1 && n <= 65535, { error: 'expected an integer port 1-65535' });

const host = z
  .string()
  .regex(/^[A-Za-z0-9.\-:]+$/, { error: 'expected a host name or IP address' });

/** A whole number in [min, max]; the ranges are what Envoy accepts for the field. */
const intIn = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, { error: `expected an integer ${min}-${max}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { error: `expected an integer ${min}-${max}` });

const HTTP2_WINDOW_MAX = 2_147_483_647;

const url = (schemes: readonly string[], what: string) =>
  z.string().refine(
    (s) => {
      try {
        return schemes.includes(new URL(s).protocol);
      } catch {
        return false;
      }
    },
    { error: `expected a ${what} URL (${schemes.map((s) => `${s}//`).join(' or ')})` },
  );

const schema = z.object({
  DATABASE_URL: optional(url(['postgres:', 'postgresql:'], 'Postgres')),
  SLUICE_DATA_DIR: optional(z.string()),
  SLUICE_PG_PORT: optional(port),
  ADMIN_HOST: optional(host).default('127.0.0.1'),
  ADMIN_PORT: optional(port).default(9080),
  XDS_HOST: optional(host).default('127.0.0.1'),
  XDS_PORT: optional(port).default(18000),
  GATEWAY_ADDRESS: optional(host).default('0.0.0.0'),
  GATEWAY_PORT: optional(port).default(10000),
  // Edge limits (defaults in translate/options.ts EDGE_DEFAULTS; 0 ms disables a timeout).
  GATEWAY_REQUEST_HEADERS_TIMEOUT_MS: optional(intIn(0, 3_600_000)),
  GATEWAY_STREAM_IDLE_TIMEOUT_MS: optional(intIn(0, 86_400_000)),
  GATEWAY_REQUEST_TIMEOUT_MS: optional(intIn(0, 86_400_000)),
  GATEWAY_IDLE_TIMEOUT_MS: optional(intIn(0, 86_400_000)),
  GATEWAY_MAX_REQUEST_HEADERS_KB: optional(intIn(1, 8192)),
  GATEWAY_CONNECTION_BUFFER_BYTES: optional(intIn(1024, 16 * 1024 * 1024)),
  GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS: optional(intIn(1, HTTP2_WINDOW_MAX)),
  GATEWAY_HTTP2_STREAM_WINDOW_BYTES: optional(intIn(65_535, HTTP2_WINDOW_MAX)),
  GATEWAY_HTTP2_CONNECTION_WINDOW_BYTES: optional(intIn(65_535, HTTP2_WINDOW_MAX)),
  GATEWAY_XFF_TRUSTED_HOPS: optional(intIn(0, 16)),
  SLUICE_BOOTSTRAP_TOKEN: optional(z.string().min(24, { error: 'expected at least 24 characters when set' })),
  AUTHZ_HOST: optional(host).default('127.0.0.1'),
  AUTHZ_PORT: optional(port).default(9191),
  // Unset: Envoys dial AUTHZ_HOST and the port bound.
  AUTHZ_ADVERTISE_HOST: optional(host),
  AUTHZ_ADVERTISE_PORT: optional(port),
  // Envoy's ext_authz deadline; past it a route's auth.on_error decides (deny: 503).
  AUTHZ_TIMEOUT_MS: optional(intIn(10, 60_000)).default(500),
  RATELIMIT_HOST: optional(host).default('127.0.0.1'),
  RATELIMIT_PORT: optional(port).default(8081),
  RATELIMIT_ADVERTISE_HOST: optional(host),
  RATELIMIT_ADVERTISE_PORT: optional(port),
  // Envoy's rate-limit deadline; past it a route's policies' on_error decides
  // (any deny: 503). 500 ms: well above a loaded 2-core machine's gRPC round trip,
  // so a busy service is waited for instead of admitted past (over-admitting).
  RATELIMIT_TIMEOUT_MS: optional(intIn(10, 60_000)).default(500),
  REDIS_URL: optional(url(['redis:', 'rediss:'], 'Redis')),
  SLUICE_SECRET: optional(z.string().min(32, { error: 'expected at least 32 characters when set' })),
  // An absolute path, or 'off'; unset means stdout.
  GATEWAY_ACCESS_LOG_PATH: optional(
    z.string().refine((v) => v === 'off' || (path.isAbsolute(v) && !v.includes('\0')), { error: "expected an absolute file path or 'off'" }),
  ),
  GATEWAY_OTLP_ADDRESS: optional(
    z.string().regex(/^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/, { error: 'expected host:port' }).refine((v) => {
      const p = Number(v.slice(v.lastIndexOf(':') + 1));
      return p >= 1 && p <= 65535;
    }, { error: 'expected host:port with a port 1-65535' }),
  ),
  GATEWAY_TRACE_SAMPLING_PERCENT: optional(intIn(0, 100)),
  GATEWAY_ROUTE_STATS: optional(z.enum(ROUTE_STATS_MODES)).default('all'),
  METRICS_PUBLIC: optional(z.enum(['true', 'false'], { error: "expected 'true' or 'false'" })).default('false'),
  SLUICE_SERVER_TIMING: optional(z.enum(['true', 'false'], { error: "expected 'true' or 'false'" })).default('false'),
  // Revision history (store/revision-history.ts). A full checkpoint every N
  // revisions or M bytes of change sets (defaults 100 and 5 MiB); revisions kept
  // while among the newest SLUICE_REVISION_RETAIN (default 1000) and younger than
  // SLUICE_REVISION_RETAIN_DAYS (default 30); 0 turns a limit off. The audit log
  // has its own, longer retention (default 365 days; 0: forever).
  SLUICE_REVISION_CHECKPOINT_EVERY: optional(intIn(1, 100_000)).default(100),
  SLUICE_REVISION_CHECKPOINT_BYTES: optional(intIn(65_536, 1_073_741_824)).default(5 * 1024 * 1024),
  SLUICE_REVISION_RETAIN: optional(intIn(0, 100_000_000)).default(1000),
  SLUICE_REVISION_RETAIN_DAYS: optional(intIn(0, 36_500)).default(30),
  SLUICE_AUDIT_RETAIN_DAYS: optional(intIn(0, 36_500)).default(365),
  LOG_LEVEL: optional(
    z.preprocess(
      (v) => (typeof v === 'string' ? v.toLowerCase() : v),
      z.enum(logLevels, { error: `expected one of ${logLevels.join(', ')}` }),
    ),
  ).default('info'),
});

/** Parses settings from `env` (default process.env); throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  const transport = xdsTransportSchema.safeParse(env);
  if (!parsed.success || !transport.success) {
    const issues = [...(parsed.error?.issues ?? []), ...(transport.error?.issues ?? [])].map((issue) => {
      const variable = String(issue.path[0] ?? '(environment)');
      const raw = env[variable];
      const got =
        raw === undefined
          ? 'it is not set'
          : secretVariables.has(variable)
            ? `got a value of ${raw.length} characters`
            : `got ${JSON.stringify(raw)}`;
      return { variable, problem: `${issue.message}, ${got}` };
    });
    throw new ConfigError(issues);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.SLUICE_DATA_DIR ?? path.join(repoRoot, '.data')),
    postgresPort: e.SLUICE_PG_PORT,
    adminHost: e.ADMIN_HOST,
    adminPort: e.ADMIN_PORT,
    xdsHost: e.XDS_HOST,
    xdsPort: e.XDS_PORT,
    gatewayAddress: e.GATEWAY_ADDRESS,
    gatewayPort: e.GATEWAY_PORT,
    gatewayEdge: {
      requestHeadersTimeoutMs: e.GATEWAY_REQUEST_HEADERS_TIMEOUT_MS,
      streamIdleTimeoutMs: e.GATEWAY_STREAM_IDLE_TIMEOUT_MS,
      requestTimeoutMs: e.GATEWAY_REQUEST_TIMEOUT_MS,
      connectionIdleTimeoutMs: e.GATEWAY_IDLE_TIMEOUT_MS,
      maxRequestHeadersKb: e.GATEWAY_MAX_REQUEST_HEADERS_KB,
      perConnectionBufferLimitBytes: e.GATEWAY_CONNECTION_BUFFER_BYTES,
      http2MaxConcurrentStreams: e.GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS,
      http2InitialStreamWindowBytes: e.GATEWAY_HTTP2_STREAM_WINDOW_BYTES,
      http2InitialConnectionWindowBytes: e.GATEWAY_HTTP2_CONNECTION_WINDOW_BYTES,
      xffTrustedHops: e.GATEWAY_XFF_TRUSTED_HOPS,
    },
    bootstrapToken: e.SLUICE_BOOTSTRAP_TOKEN,
    authzHost: e.AUTHZ_HOST,
    authzPort: e.AUTHZ_PORT,
    authzAdvertise: { host: e.AUTHZ_ADVERTISE_HOST, port: e.AUTHZ_ADVERTISE_PORT },
    authzTimeoutMs: e.AUTHZ_TIMEOUT_MS,
    ratelimitHost: e.RATELIMIT_HOST,
    ratelimitPort: e.RATELIMIT_PORT,
    ratelimitAdvertise: { host: e.RATELIMIT_ADVERTISE_HOST, port: e.RATELIMIT_ADVERTISE_PORT },
    ratelimitTimeoutMs: e.RATELIMIT_TIMEOUT_MS,
    redisUrl: e.REDIS_URL,
    secret: e.SLUICE_SECRET,
    logLevel: e.LOG_LEVEL,
    gatewayAccessLog: accessLogSetting(e.GATEWAY_ACCESS_LOG_PATH),
    otlpCollector: hostPort(e.GATEWAY_OTLP_ADDRESS),
    traceSamplingPercent: e.GATEWAY_TRACE_SAMPLING_PERCENT,
    routeStats: e.GATEWAY_ROUTE_STATS,
    metricsPublic: e.METRICS_PUBLIC === 'true',
    serverTiming: e.SLUICE_SERVER_TIMING === 'true',
    revisionHistory: {
      checkpointEveryRevisions: e.SLUICE_REVISION_CHECKPOINT_EVERY,
      checkpointEveryBytes: e.SLUICE_REVISION_CHECKPOINT_BYTES,
      retainRevisions: e.SLUICE_REVISION_RETAIN,
      retainMs: e.SLUICE_REVISION_RETAIN_DAYS * 86_400_000,
      auditRetainMs: e.SLUICE_AUDIT_RETAIN_DAYS * 86_400_000,
    },
    ...transport.data,
  };
}

function accessLogSetting(value: string | undefined): Config['gatewayAccessLog'] {
  if (value === undefined) return { to: 'stdout' };
  return value === 'off' ? undefined : { to: 'file', path: value };
}

/** host:port or [v6]:port, already checked by the schema. */
function hostPort(value: string | undefined): { host: string; port: number } | undefined {
  if (value === undefined) return undefined;
  const cut = value.lastIndexOf(':');
  return { host: value.slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(value.slice(cut + 1)) };
}

/** loadConfig for entry points: on bad config, prints why to stderr and exits with code 2. */
export function configOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`sluice: invalid configuration\n${err.message.replace(/^/gm, '  ')}\n`);
    process.exit(2);
  }
}
