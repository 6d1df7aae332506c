// The messages between the control plane's main thread and the request-path
// worker (host.ts <-> worker.ts). Both ends are this repository's code in one
// process, so the shapes are declared, not parsed.
import type { AuthzMetricsSnapshot } from '../authz/metrics.ts';
import type { ApiKeyRecord } from '../authz/api-keys.ts';
import type { State } from '../model/index.ts';
import type { RateLimitMetricsSnapshot } from '../ratelimit/metrics.ts';

/** The parts of a State the two services read: a worker is handed only these (a structured copy costs per object). */
export type RequestPathState = Pick<State, 'revision' | 'consumers' | 'credentials' | 'jwt_providers' | 'rate_limit_policies'>;

export interface RequestPathInput {
  state: RequestPathState;
  /** Hashes of the live API keys. */
  apiKeys: readonly ApiKeyRecord[];
}

/** Everything the worker needs to start (its workerData). */
export interface RequestPathSettings {
  authz: { host: string; port: number; secret?: string };
  ratelimit: { host: string; port: number; redisUrl?: string; domain: string; storeTimeoutMs?: number };
}

export type ToWorker =
  | { type: 'install'; input: RequestPathInput }
  | { type: 'metrics'; id: number }
  | { type: 'close' };

export type LogLevel = 'info' | 'warn' | 'error';

export type FromWorker =
  | { type: 'listening'; authzPort: number; ratelimitPort: number }
  | { type: 'installed'; revision: number; ok: boolean; error?: string }
  | { type: 'metrics'; id: number; authz: AuthzMetricsSnapshot; ratelimit: RateLimitMetricsSnapshot }
  | { type: 'log'; level: LogLevel; msg: string; fields?: Record<string, unknown> }
  | { type: 'closed' };

/** Only what the services read, so the copy to the worker does not grow with routes or upstreams. */
export function requestPathState(state: State): RequestPathState {
  return {
    revision: state.revision,
    consumers: state.consumers,
    credentials: state.credentials,
    jwt_providers: state.jwt_providers,
    rate_limit_policies: state.rate_limit_policies,
  };
}
