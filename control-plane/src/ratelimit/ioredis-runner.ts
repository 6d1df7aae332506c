// The Redis client adapter: ioredis, kept to this one file so the store does not
// care which client runs its script.
import { Redis } from 'ioredis';
import type { ScriptRunner } from './redis-store.ts';
import { COUNTING_SCRIPT } from './redis-store.ts';

export interface IoredisRunnerOptions {
  /**
   * Per-command deadline, a backstop that clears commands a hung Redis never answers.
   * The request's own deadline is the service's storeTimeoutMs (shorter); this one is
   * longer so a reply that is already waiting is not discarded. Default 1,000 ms.
   */
  commandTimeoutMs?: number;
  /** Longest wait between reconnection attempts. Default 500 ms. */
  maxReconnectDelayMs?: number;
  /**
   * Sends the scripts of decisions started in the same event-loop turn as one
   * write (ioredis' auto-pipelining). Off by default: it saves Redis CPU only when
   * several decisions start in one event-loop turn (16 in flight, closed loop:
   * ~46 -> ~25 µs per decision; at the bench's open-loop rates no difference), and
   * its per-pipeline objects outlive the young generation: the service promoted
   * ~4.4 KB per decision instead of ~1.1 KB (V8's heap profiler, 1,000 decisions/s)
   * and paid a major collection every ~2 s instead of every ~15 s, pauses that
   * were the service's p99 (bench/RESULTS.md).
   */
  autoPipelining?: boolean;
}

type CountingCommand = (numberOfKeys: number, ...keysAndArgs: string[]) => Promise<unknown>;

/**
 * Runs the counting script with EVALSHA, falling back to EVAL when Redis has lost
 * its script cache (a restarted Redis answers NOSCRIPT; ioredis' defineCommand
 * retries with the source). Commands fail at once while disconnected (no offline
 * queue): the service's failure mode decides, and counting resumes by itself when
 * the client reconnects.
 */
export class IoredisRunner implements ScriptRunner {
  private readonly redis: Redis;
  private readonly counting: CountingCommand;

  constructor(url: string, options: IoredisRunnerOptions = {}) {
    const maxDelay = options.maxReconnectDelayMs ?? 500;
    this.redis = new Redis(url, {
      commandTimeout: options.commandTimeoutMs ?? 1_000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt: number) => Math.min(attempt * 50, maxDelay),
      lazyConnect: true,
      // Each decision is one small write that is waited on: no Nagle delay (ioredis' default, said here on purpose).
      noDelay: true,
      enableAutoPipelining: options.autoPipelining ?? false,
    });
    // Errors surface through the commands that fail; without a listener ioredis prints each one.
    this.redis.on('error', () => undefined);
    this.redis.defineCommand('sluiceCount', { lua: COUNTING_SCRIPT });
    const command = (this.redis as unknown as Record<string, unknown>)['sluiceCount'];
    if (typeof command !== 'function') throw new Error('ioredis did not define the counting command');
    this.counting = (command as CountingCommand).bind(this.redis);
  }

  /** Connects once; a Redis that is down now is not fatal (the client keeps retrying). */
  async connect(): Promise<boolean> {
    try {
      await this.redis.connect();
      return true;
    } catch {
      return false;
    }
  }

  run(keys: readonly string[], args: readonly string[]): Promise<unknown> {
    return this.counting(keys.length, ...keys, ...args);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
