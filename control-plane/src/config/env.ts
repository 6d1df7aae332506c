// Every control-plane setting, read from environment variables and validated
// once at startup. The rest of the code receives a typed Config and never reads
// process.env itself, so a typo fails fast with a message naming the variable.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** Repository root (this file is control-plane/src/config/env.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

export interface Config {
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
  /** First admin token to create at start when none exists (write role); undefined: none. */
  bootstrapToken: string | undefined;
  authzHost: string;
  authzPort: number;
  ratelimitHost: string;
  ratelimitPort: number;
  /** Redis for rate-limit counters; undefined means in-memory counters. */
  redisUrl: string | undefined;
  /** HMAC key for API-key hashes; undefined means keys cannot be created. */
  secret: string | undefined;
  logLevel: LogLevel;
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
  SLUICE_BOOTSTRAP_TOKEN: optional(z.string().min(24, { error: 'expected at least 24 characters when set' })),
  AUTHZ_HOST: optional(host).default('127.0.0.1'),
  AUTHZ_PORT: optional(port).default(9191),
  RATELIMIT_HOST: optional(host).default('127.0.0.1'),
  RATELIMIT_PORT: optional(port).default(8081),
  REDIS_URL: optional(url(['redis:', 'rediss:'], 'Redis')),
  SLUICE_SECRET: optional(z.string().min(32, { error: 'expected at least 32 characters when set' })),
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
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => {
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
    bootstrapToken: e.SLUICE_BOOTSTRAP_TOKEN,
    authzHost: e.AUTHZ_HOST,
    authzPort: e.AUTHZ_PORT,
    ratelimitHost: e.RATELIMIT_HOST,
    ratelimitPort: e.RATELIMIT_PORT,
    redisUrl: e.REDIS_URL,
    secret: e.SLUICE_SECRET,
    logLevel: e.LOG_LEVEL,
  };
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
