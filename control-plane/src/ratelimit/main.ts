// The rate-limit service as one unit: store choice (Redis when a URL is given,
// else memory: one replica only), service, gRPC server, and a State source.
// startRateLimit() is what the composition root calls to run it in-process (with
// a source it feeds from the change feed); run as a script, this file is the
// service's own process, reading State from a JSON file it watches.
//
//   SLUICE_STATE_FILE=state.json [REDIS_URL=redis://...] node --import tsx control-plane/src/ratelimit/main.ts
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { parseState, type State } from '../model/index.ts';
import { IoredisRunner } from './ioredis-runner.ts';
import { MemoryCounterStore } from './memory-store.ts';
import { RedisCounterStore } from './redis-store.ts';
import { RateLimitServer } from './server.ts';
import { RateLimitService, type RateLimitLog, type RateLimitState } from './service.ts';
import type { CounterStore } from './store.ts';

/** Where the service's State comes from: the composition root's feed, a file, a test. */
export interface StateSource {
  /** Calls `onState` with the current State (when there is one) and with every later one. */
  start(onState: (state: RateLimitState) => void): Promise<void>;
  close(): Promise<void>;
}

/** A source the owner pushes States into (the in-process wiring: publisher -> push). */
export class PushStateSource implements StateSource {
  private listener: ((state: RateLimitState) => void) | undefined;
  private latest: RateLimitState | undefined;

  push(state: RateLimitState): void {
    this.latest = state;
    this.listener?.(state);
  }

  start(onState: (state: RateLimitState) => void): Promise<void> {
    this.listener = onState;
    if (this.latest) onState(this.latest);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.listener = undefined;
    return Promise.resolve();
  }
}

/**
 * A State kept in a JSON file (what `GET /v1/state` style exports or a deploy tool
 * writes), re-read when it changes. A file that does not parse keeps the last good
 * State and is logged; the service never runs on a half-valid State.
 */
export class FileStateSource implements StateSource {
  private lastRevision: number | undefined;

  constructor(
    private readonly file: string,
    private readonly log: RateLimitLog,
    private readonly pollMs = 500,
  ) {}

  async start(onState: (state: State) => void): Promise<void> {
    const load = async (): Promise<void> => {
      const state = await this.read();
      if (state && state.revision !== this.lastRevision) {
        this.lastRevision = state.revision;
        onState(state);
        this.log.info('rate-limit policies loaded', { revision: state.revision, policies: state.rate_limit_policies.length });
      }
    };
    await load();
    watchFile(this.file, { interval: this.pollMs, persistent: false }, () => void load());
  }

  private async read(): Promise<State | undefined> {
    try {
      const parsed = parseState(JSON.parse(await readFile(this.file, 'utf8')));
      if (parsed.ok) return parsed.value;
      this.log.error('state file is not a valid State; keeping the last good one', { file: this.file, issues: parsed.issues.slice(0, 5) });
    } catch (err) {
      this.log.error('state file unreadable; keeping the last good one', { file: this.file, error: err instanceof Error ? err.message : String(err) });
    }
    return undefined;
  }

  close(): Promise<void> {
    unwatchFile(this.file);
    return Promise.resolve();
  }
}

export interface StartRateLimitOptions {
  source: StateSource;
  /** Counters in this Redis; without it, in memory (correct for one replica only). */
  redisUrl?: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  domain: string;
  log: RateLimitLog;
  /** Longest wait for Redis (default: the service's); keep it under Envoy's RATELIMIT_TIMEOUT_MS. */
  storeTimeoutMs?: number;
}

export interface RunningRateLimit {
  port: number;
  service: RateLimitService;
  close(): Promise<void>;
}

export async function startRateLimit(options: StartRateLimitOptions): Promise<RunningRateLimit> {
  const store = await openStore(options.redisUrl, options.log);
  const service = new RateLimitService({
    store,
    domain: options.domain,
    log: options.log,
    ...(options.storeTimeoutMs !== undefined ? { storeTimeoutMs: options.storeTimeoutMs } : {}),
  });
  await options.source.start((state) => service.setState(state));
  const server = new RateLimitServer(service);
  const port = await server.listen(options.host, options.port);
  options.log.info('rate-limit service listening', { host: options.host, port, domain: options.domain, store: options.redisUrl ? 'redis' : 'memory' });
  return {
    port,
    service,
    close: async () => {
      await options.source.close();
      await server.close();
    },
  };
}

async function openStore(redisUrl: string | undefined, log: RateLimitLog): Promise<CounterStore> {
  if (!redisUrl) return new MemoryCounterStore();
  const runner = new IoredisRunner(redisUrl);
  // Redis being down at start is an outage like any other: the failure modes apply
  // and the client keeps reconnecting.
  if (!(await runner.connect())) log.error('Redis not reachable at start; policies follow their failure mode until it is', {});
  return new RedisCounterStore(runner);
}

// ---- as its own process ---------------------------------------------------------

const ProcessEnvSchema = z.object({
  SLUICE_STATE_FILE: z.string().min(1),
  REDIS_URL: z
    .string()
    .refine((value) => /^rediss?:\/\//.test(value), 'must be a redis:// or rediss:// URL')
    .optional(),
  SLUICE_RATELIMIT_HOST: z.string().min(1).default('127.0.0.1'),
  SLUICE_RATELIMIT_PORT: z.coerce.number().int().min(0).max(65_535).default(18_083),
  SLUICE_RATELIMIT_DOMAIN: z.string().min(1).default('sluice'),
});

/** JSON lines on stdout, the control plane's format (level, time, msg, fields). */
function jsonLog(): RateLimitLog {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) =>
    process.stdout.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields })}\n`);
  return { info: (msg, fields) => write('info', msg, fields), error: (msg, fields) => write('error', msg, fields) };
}

async function runProcess(): Promise<void> {
  const log = jsonLog();
  const env = ProcessEnvSchema.safeParse(process.env);
  if (!env.success) {
    for (const issue of env.error.issues) log.error('bad environment variable', { variable: issue.path.join('.'), problem: issue.message });
    process.exit(2);
  }
  const running = await startRateLimit({
    source: new FileStateSource(env.data.SLUICE_STATE_FILE, log),
    ...(env.data.REDIS_URL ? { redisUrl: env.data.REDIS_URL } : {}),
    host: env.data.SLUICE_RATELIMIT_HOST,
    port: env.data.SLUICE_RATELIMIT_PORT,
    domain: env.data.SLUICE_RATELIMIT_DOMAIN,
    log,
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runProcess();
