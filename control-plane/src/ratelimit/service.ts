// ShouldRateLimit: descriptors -> counters -> one store decision -> Envoy's answer.
// The service holds the State it is handed (by the composition root, or by its
// own process's source) and never reads the store of config itself.
import { performance } from 'node:perf_hooks';
import type { RateLimitPolicy, State } from '../model/index.ts';
import type { RateLimitRequest, RateLimitResponse } from '../proto/codec.ts';
import { DOMAIN_PATTERN, planCounters, type PlannedCounter } from './descriptors.ts';
import { RateLimitMetrics } from './metrics.ts';
import { countedResponse, unavailableResponse } from './responses.ts';
import type { CounterStore } from './store.ts';
import type { Decision } from './window.ts';

/** What a policy does when its counters cannot be read: admit, or refuse (429). */
export type FailureMode = 'allow' | 'deny';

/** The parts of a State the service reads (all it is handed when it runs in a worker). */
export type RateLimitState = Pick<State, 'revision' | 'rate_limit_policies'>;

/** The small logging surface this room needs (the control plane's Log satisfies it). */
export interface RateLimitLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A policy's failure mode: its `on_error` (model default `allow`). */
export function policyFailureMode(policy: RateLimitPolicy): FailureMode {
  return policy.on_error;
}

export interface RateLimitServiceOptions {
  store: CounterStore;
  /** The domain Envoy's ratelimit filter sends; requests for another domain are not limited here. */
  domain: string;
  log?: RateLimitLog;
  metrics?: RateLimitMetrics;
  /**
   * Longest wait for the store. Must stay under Envoy's ratelimit filter timeout
   * (RATELIMIT_TIMEOUT_MS, translate/filters.ts) so the policies' own failure
   * modes decide, not Envoy's per-route fallback. Default DEFAULT_STORE_TIMEOUT_MS.
   */
  storeTimeoutMs?: number;
}

/**
 * Half of Envoy's default deadline (RATELIMIT_TIMEOUT_MS, 500 ms): a Redis round
 * trip on a loaded machine (GC, a busy CPU) is waited for, since giving up early
 * admits an allow policy's request uncounted; the other half leaves room for
 * the answer to reach Envoy in time.
 */
export const DEFAULT_STORE_TIMEOUT_MS = 250;

const silentLog: RateLimitLog = { info: () => undefined, error: () => undefined };

export class RateLimitService {
  readonly metrics: RateLimitMetrics;
  private policies: ReadonlyMap<string, RateLimitPolicy> = new Map();
  private revision: number | undefined;
  private storeHealthy = true;
  /** Also the server's (server.ts logs failed calls here). */
  readonly log: RateLimitLog;
  private readonly storeTimeoutMs: number;
  private readonly deadlines: Deadlines;

  constructor(private readonly options: RateLimitServiceOptions) {
    if (!DOMAIN_PATTERN.test(options.domain)) throw new Error(`rate-limit domain '${options.domain}' must match ${DOMAIN_PATTERN}`);
    this.metrics = options.metrics ?? new RateLimitMetrics();
    this.log = options.log ?? silentLog;
    this.storeTimeoutMs = options.storeTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.deadlines = new Deadlines(this.storeTimeoutMs);
  }

  /** Takes the policies of a new revision; the next request uses them. */
  setState(state: RateLimitState): void {
    this.policies = new Map(state.rate_limit_policies.map((policy) => [policy.name, policy]));
    this.revision = state.revision;
  }

  /** The revision whose policies are in force (undefined before the first State). */
  get stateRevision(): number | undefined {
    return this.revision;
  }

  async shouldRateLimit(request: RateLimitRequest): Promise<RateLimitResponse> {
    if (request.domain !== this.options.domain) return { overall_code: 'OK' };
    const { counters } = planCounters(request, this.options.domain, this.policies);
    if (counters.length === 0) return { overall_code: 'OK', statuses: (request.descriptors ?? []).map(() => ({ code: 'OK' })) };
    const decision = await this.decide(counters);
    if (decision) {
      counters.forEach((counter, i) => this.metrics.recordDecision(counter.policy.name, decision.verdicts[i]!.over ? 'over_limit' : 'ok'));
      return countedResponse(request, counters, decision);
    }
    return this.failed(request, counters);
  }

  /** The store's decision, or undefined when it failed or was too slow (logged once per outage). */
  private async decide(counters: readonly PlannedCounter[]): Promise<Decision | undefined> {
    const started = performance.now();
    try {
      const decision = await this.deadlines.within(this.options.store.decide(counters.map((c) => c.spec)));
      this.metrics.recordStoreCall(performance.now() - started, true);
      if (!this.storeHealthy) {
        this.storeHealthy = true;
        this.log.info('rate-limit store recovered; counting resumed');
      }
      return decision;
    } catch (err) {
      this.metrics.recordStoreCall(performance.now() - started, false);
      if (this.storeHealthy) {
        this.storeHealthy = false;
        this.log.error('rate-limit store unavailable; each policy now follows its failure mode', { error: errorText(err) });
      }
      return undefined;
    }
  }

  /** Without counts: refused when any policy involved says deny, else admitted. */
  private failed(request: RateLimitRequest, counters: readonly PlannedCounter[]): RateLimitResponse {
    const denying = counters.find((counter) => policyFailureMode(counter.policy) === 'deny');
    for (const counter of counters) {
      this.metrics.recordDecision(counter.policy.name, policyFailureMode(counter.policy) === 'deny' ? 'error_denied' : 'error_allowed');
    }
    if (denying) return unavailableResponse(request, denying.policy.name);
    return { overall_code: 'OK', statuses: (request.descriptors ?? []).map(() => ({ code: 'OK' })) };
  }

  close(): Promise<void> {
    return this.options.store.close();
  }
}

interface Waiting {
  deadline: number;
  reject: (err: Error) => void;
}

/**
 * Rejects a call's promise when it has not settled `ms` after the call. Every call
 * has the same timeout, so deadlines come in call order: one timer, armed for the
 * oldest waiting call, serves them all (a timer and a race per decision cost more
 * than the rest of the decision). The rejection waits for one more turn of the
 * event loop (setImmediate runs after the I/O poll): when this process itself was
 * stalled (GC, a busy CPU), timers run before the socket reads that are already
 * waiting, and an answer that arrived in time would otherwise be thrown away as a
 * timeout.
 */
class Deadlines {
  /** Calls not yet settled, oldest first (Map keeps insertion order). */
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {}

  within<T>(promise: Promise<T>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { deadline: performance.now() + this.ms, reject });
      this.arm();
      promise.then(
        (value) => {
          this.waiting.delete(id);
          resolve(value);
        },
        (err: unknown) => {
          this.waiting.delete(id);
          reject(err);
        },
      );
    });
  }

  /** Arms the timer for the oldest waiting call, unless it is armed already. */
  private arm(): void {
    if (this.timer) return;
    const oldest = this.waiting.values().next();
    if (oldest.done) return;
    this.timer = setTimeout(() => this.expire(), Math.max(0, oldest.value.deadline - performance.now()));
  }

  /** Rejects (a loop turn later) every call past its deadline, then re-arms for the next. */
  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    const due: Array<[number, Waiting]> = [];
    for (const entry of this.waiting) {
      if (entry[1].deadline > now) break;
      due.push(entry);
    }
    if (due.length > 0) {
      setImmediate(() => {
        for (const [id, waiting] of due) {
          // Settled during the extra turn: its answer stands.
          if (!this.waiting.delete(id)) continue;
          waiting.reject(new Error(`rate-limit store did not answer within ${this.ms} ms`));
        }
        this.arm();
      });
      return;
    }
    this.arm();
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
