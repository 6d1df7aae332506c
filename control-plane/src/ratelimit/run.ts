// The rate-limit service as one unit: store choice (Redis when a URL is given,
// else memory: one replica only), service, gRPC server, and a State source.
// startRateLimit() is what the request-path worker calls to run it (with a source
// it pushes States into); main.ts runs it as its own process. Nothing here imports
// zod or the model's schemas: the worker's heap stays small
// (test/unit/request-path-imports.test.ts).
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
