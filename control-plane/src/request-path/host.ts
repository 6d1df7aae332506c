// Runs the request-path services (authz, ratelimit) in a worker thread and
// feeds it: the main thread's side of worker.ts. The composition root hands it
// each revision's State before the fleet gets that revision (install() resolves
// when the worker answers from it), reads the services' counters at scrape time,
// and gets a fresh worker on the same ports if the thread ever dies.
import { Worker } from 'node:worker_threads';
import { AuthzMetrics, type AuthzMetricsSnapshot } from '../authz/metrics.ts';
import { RateLimitMetrics, type RateLimitMetricsSnapshot } from '../ratelimit/metrics.ts';
import type { FromWorker, RequestPathInput, RequestPathSettings, ToWorker } from './protocol.ts';

export interface RequestPathLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * The worker's young generation, in MiB (V8 splits it into semi-spaces of a third
 * each). The services allocate ~15-40 KB per call, nearly all of it dead by the
 * next collection, so a collection's pause is mostly fixed cost plus the calls in
 * flight; with the default young generation (16 MiB semi-spaces) pauses of
 * 1-3.5 ms every few hundred calls landed in the p99, while a 1 MiB semi-space
 * collects ~4x as often at a quarter of the pause (measured: mean 0.27 ms, max
 * 1.0 ms on the bench machine; bench/RESULTS.md).
 */
export const DEFAULT_YOUNG_GENERATION_MB = 3;

export interface RequestPathOptions extends RequestPathSettings {
  log: RequestPathLog;
  youngGenerationMb?: number;
}

export interface RequestPathMetrics {
  authz: AuthzMetricsSnapshot;
  ratelimit: RateLimitMetricsSnapshot;
}

const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url);
const METRICS_TIMEOUT_MS = 1_000;
const MAX_RESTART_DELAY_MS = 5_000;

interface PendingInstall {
  input: RequestPathInput;
  resolve: () => void;
}

export class RequestPathWorker {
  private worker: Worker | undefined;
  private settings: RequestPathSettings;
  private latest: RequestPathInput | undefined;
  /** The input the running worker last took (answered ok); undefined for a new worker. */
  private taken: RequestPathInput | undefined;
  private sent = 0;
  private readonly installs: PendingInstall[] = [];
  private readonly metricsWaiters = new Map<number, (metrics: RequestPathMetrics) => void>();
  private nextMetricsId = 1;
  private lastMetrics: RequestPathMetrics | undefined;
  private closing = false;
  private restarts = 0;

  private constructor(
    private readonly options: RequestPathOptions,
    readonly authzPort: number,
    readonly ratelimitPort: number,
  ) {
    // A restarted worker binds the ports the first one got (Envoy's clusters point at them).
    this.settings = { authz: { ...options.authz, port: authzPort }, ratelimit: { ...options.ratelimit, port: ratelimitPort } };
  }

  /** Starts the worker; resolves once both services listen (rejects if either cannot bind). */
  static async start(options: RequestPathOptions): Promise<RequestPathWorker> {
    const { worker, ports } = await spawn({ authz: options.authz, ratelimit: options.ratelimit }, options);
    const host = new RequestPathWorker(options, ports.authzPort, ports.ratelimitPort);
    host.adopt(worker);
    return host;
  }

  /** Inputs sent to a worker so far (for tests and diagnostics). */
  get posted(): number {
    return this.sent;
  }

  /**
   * Hands the services a revision. Resolves when the worker answers from it (or
   * could not take it, which is logged): the caller publishes to the fleet after,
   * so a key revoked in a revision fails at the services before any Envoy has it.
   */
  install(input: RequestPathInput): Promise<void> {
    this.latest = input;
    const worker = this.worker;
    // Restarting: the new worker is given the latest input when it is up.
    if (!worker) return Promise.resolve();
    // A revision that changes nothing the services read (a route or upstream
    // edit) is not sent: the worker already answers from exactly this data, so
    // the fleet need not wait a round trip to the thread for it.
    if (this.installs.length === 0 && this.taken !== undefined && sameServiceData(this.taken, input)) return Promise.resolve();
    return new Promise((resolve) => {
      this.installs.push({ input, resolve });
      this.sent += 1;
      post(worker, { type: 'install', input });
    });
  }

  /** Asks the worker for its counters (at most 1 s); the last answer is kept for metrics(). */
  async refreshMetrics(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    const id = this.nextMetricsId++;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.metricsWaiters.delete(id);
        resolve();
      }, METRICS_TIMEOUT_MS);
      this.metricsWaiters.set(id, (metrics) => {
        clearTimeout(timer);
        this.lastMetrics = metrics;
        resolve();
      });
      post(worker, { type: 'metrics', id });
    });
  }

  /** The counters as of the last refreshMetrics() (zeros before the first). */
  metrics(): RequestPathMetrics {
    return this.lastMetrics ?? { authz: new AuthzMetrics().snapshot(), ratelimit: new RateLimitMetrics().snapshot() };
  }

  /**
   * Ends the thread at once, as a crash would; the host then starts a new one on
   * the same ports with the latest input. For tests of exactly that, and for an
   * operator who wants a fresh thread without restarting the control plane.
   */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Stops both services (calls in flight finish, bounded) and the thread. */
  async close(): Promise<void> {
    this.closing = true;
    const worker = this.worker;
    this.worker = undefined;
    this.settleInstalls();
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    post(worker, { type: 'close' });
    const force = setTimeout(() => void worker.terminate(), 5_000);
    await exited;
    clearTimeout(force);
  }

  private adopt(worker: Worker): void {
    this.worker = worker;
    this.taken = undefined;
    worker.on('message', (message: FromWorker) => this.onMessage(message));
    // An uncaught error ends the thread ('exit' follows); it is logged with its cause.
    worker.on('error', (err) => this.options.log.error('request-path: worker failed', { error: err.message }));
    worker.once('exit', (code) => this.onExit(worker, code));
    if (this.latest) void this.install(this.latest);
  }

  private onMessage(message: FromWorker): void {
    switch (message.type) {
      case 'installed': {
        if (!message.ok) this.options.log.error('request-path: the services could not take a revision; they keep the previous one', { revision: message.revision, error: message.error });
        // Answers come in the order installs were posted.
        while (this.installs.length > 0 && this.installs[0]!.input.state.revision <= message.revision) {
          const pending = this.installs.shift()!;
          if (message.ok && pending.input.state.revision === message.revision) this.taken = pending.input;
          pending.resolve();
        }
        return;
      }
      case 'metrics':
        this.metricsWaiters.get(message.id)?.({ authz: message.authz, ratelimit: message.ratelimit });
        this.metricsWaiters.delete(message.id);
        return;
      case 'log':
        this.options.log[message.level](message.msg, message.fields);
        return;
      case 'listening':
      case 'closed':
        return;
    }
  }

  /** Nobody waits on a worker that is gone: the services will be handed the latest input again. */
  private settleInstalls(): void {
    for (const pending of this.installs.splice(0)) pending.resolve();
  }

  private onExit(worker: Worker, code: number): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.taken = undefined;
    this.settleInstalls();
    if (this.closing) return;
    this.options.log.error('request-path: the authz/ratelimit worker stopped; starting a new one', { exitCode: code });
    this.scheduleRestart();
  }

  /** Backs off 100 ms, 200 ms, ... up to 5 s between attempts that fail. */
  private scheduleRestart(): void {
    const delayMs = Math.min(100 * 2 ** this.restarts, MAX_RESTART_DELAY_MS);
    this.restarts += 1;
    setTimeout(() => void this.restart(), delayMs).unref();
  }

  private async restart(): Promise<void> {
    if (this.closing) return;
    try {
      const { worker } = await spawn(this.settings, this.options);
      if (this.closing) return void worker.terminate();
      this.restarts = 0;
      this.adopt(worker);
      this.options.log.info('request-path: worker restarted', { authzPort: this.authzPort, ratelimitPort: this.ratelimitPort });
    } catch (err) {
      this.options.log.error('request-path: worker restart failed', { error: err instanceof Error ? err.message : String(err) });
      this.scheduleRestart();
    }
  }
}

function post(worker: Worker, message: ToWorker): void {
  worker.postMessage(message);
}

/** A worker whose services listen, and their ports; rejects (and stops the thread) if it dies first. */
function spawn(settings: RequestPathSettings, options: Pick<RequestPathOptions, 'log' | 'youngGenerationMb'>): Promise<{ worker: Worker; ports: { authzPort: number; ratelimitPort: number } }> {
  const worker = new Worker(WORKER_URL, {
    workerData: settings,
    resourceLimits: { maxYoungGenerationSizeMb: options.youngGenerationMb ?? DEFAULT_YOUNG_GENERATION_MB },
  });
  return new Promise((resolve, reject) => {
    const onMessage = (message: FromWorker) => {
      if (message.type === 'log') return options.log[message.level](message.msg, message.fields);
      if (message.type !== 'listening') return;
      cleanup();
      resolve({ worker, ports: { authzPort: message.authzPort, ratelimitPort: message.ratelimitPort } });
    };
    const onError = (err: Error) => {
      cleanup();
      void worker.terminate();
      reject(err);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`request-path worker exited with code ${code} before listening`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
  });
}

/**
 * True when `next` holds the very objects `taken` did, in the same order, for
 * everything the services read (the store carries unchanged objects, frozen,
 * from one revision to the next) and the same key hashes; only the revision
 * number may differ. New objects with equal content count as a change: the
 * worker is then sent them, as before.
 */
function sameServiceData(taken: RequestPathInput, next: RequestPathInput): boolean {
  const a = taken.state;
  const b = next.state;
  return (
    sameItems(a.consumers, b.consumers) &&
    sameItems(a.credentials, b.credentials) &&
    sameItems(a.jwt_providers, b.jwt_providers) &&
    sameItems(a.rate_limit_policies, b.rate_limit_policies) &&
    taken.apiKeys.length === next.apiKeys.length &&
    taken.apiKeys.every((key, i) => key.credential === next.apiKeys[i]!.credential && key.keyHash === next.apiKeys[i]!.keyHash)
  );
}

function sameItems(a: readonly object[], b: readonly object[]): boolean {
  return a === b || (a.length === b.length && a.every((item, i) => item === b[i]));
}
