// The control plane's one log format: JSON lines from pino (fastify's own
// logger), with ISO times and level names. Callers pass fields, never secrets;
// as a second line of defence, credential-bearing headers and any field named
// key, token or secret (at the top or up to two levels down) are redacted.
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config/env.ts';

export type { Logger } from 'pino';

const CREDENTIAL_FIELDS = ['key', 'token', 'secret', 'password', 'authorization', 'cookie', 'x-api-key'];
const HEADER_PATHS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key'].flatMap((h) => [
  `req.headers["${h}"]`,
  `res.headers["${h}"]`,
  `headers["${h}"]`,
]);
export const REDACTED_PATHS: readonly string[] = [
  ...HEADER_PATHS,
  ...CREDENTIAL_FIELDS.flatMap((f) => [`["${f}"]`, `*["${f}"]`, `*.*["${f}"]`]),
];

/** A pino logger writing JSON lines to `destination` (stdout by default). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: null,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** The small logging surface the rest of the control plane uses. */
export interface Log {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A Log over a pino logger (or a new one at `level` on stdout). */
export function createLog(levelOrLogger: LogLevel | Logger): Log {
  const logger = typeof levelOrLogger === 'string' ? createLogger(levelOrLogger) : levelOrLogger;
  return {
    info: (msg, fields = {}) => logger.info(fields, msg),
    warn: (msg, fields = {}) => logger.warn(fields, msg),
    error: (msg, fields = {}) => logger.error(fields, msg),
  };
}
