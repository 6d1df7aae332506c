// A small structured logger: one JSON line per event on stdout. Callers pass
// fields, never secrets (keys, tokens and JWTs are not logged anywhere).
import type { LogLevel } from './config/env.ts';

const ORDER: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

export interface Log {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLog(level: LogLevel): Log {
  const write = (at: LogLevel) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[at] < ORDER[level]) return;
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level: at, msg, ...fields })}\n`);
  };
  return { info: write('info'), warn: write('warn'), error: write('error') };
}
