// The envoy.service.auth.v3.Authorization/Check gRPC service. It is handed
// AuthzInput snapshots (State + API-key hashes) by whoever runs it and answers
// every check from memory; only JWKS refreshes touch the network.
import { performance } from 'node:perf_hooks';
import { GrpcError, UnaryGrpcServer } from '../grpc/unary-server.ts';
import { GrpcStatus } from '../grpc/framing.ts';
import { AUTHZ_CONTEXT } from '../model/contract.ts';
import type { CheckResponse } from '../proto/codec.ts';
import { decide } from './decide.ts';
import { DEFAULT_JWKS_SETTINGS, KeySources, type JwksSettings } from './jwks.ts';
import { type AuthzIndex, type AuthzInput, buildIndex } from './lookup.ts';
import { AuthzMetrics } from './metrics.ts';
import { checkResponse } from './response.ts';
import { CHECK_PATH, decodeCheckRequest, encodeCheckResponse, type WireCheckRequest } from './wire.ts';

export interface AuthzServiceOptions {
  /** SLUICE_SECRET, the HMAC key API keys are hashed under; without it API keys never match. */
  secret?: string;
  jwks?: Partial<JwksSettings>;
  log?: Log;
  /** Clock for token and credential expiry (tests); default Date.now. */
  now?: () => number;
}

/** The logging surface the service needs (log.ts's Log fits; authz/ does not import it). */
export interface Log {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const quietLog: Log = { info: () => {}, warn: () => {}, error: () => {} };

/** Fail closed with 503 when there is nothing to decide with (no State yet, or an internal error). */
function unavailable(reason: string): CheckResponse {
  return {
    status: { code: 14, message: reason },
    denied_response: {
      status: { code: 503 },
      headers: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      body: JSON.stringify({ error: 'unavailable', message: 'authorization is not available' }),
    },
  };
}

export class AuthzService {
  readonly metrics = new AuthzMetrics();
  private index: AuthzIndex | undefined;
  private readonly sources: KeySources;
  private readonly log: Log;
  private readonly now: () => number;
  private server: UnaryGrpcServer | undefined;

  constructor(private readonly options: AuthzServiceOptions = {}) {
    this.log = options.log ?? quietLog;
    this.now = options.now ?? Date.now;
    this.sources = new KeySources({ ...DEFAULT_JWKS_SETTINGS, ...options.jwks }, this.metrics, this.now);
  }

  /** The revision checks are answered from (undefined before the first update). */
  get revision(): number | undefined {
    return this.index?.revision;
  }

  /** Installs a new State; the next check uses it. */
  update(input: AuthzInput): void {
    const index = buildIndex(input);
    this.sources.update(input.state.jwt_providers);
    this.index = index;
  }

  async check(request: WireCheckRequest): Promise<CheckResponse> {
    const started = performance.now();
    const index = this.index;
    if (!index) {
      this.metrics.recordCheck('error', 'no_state', performance.now() - started);
      return unavailable('no_state');
    }
    const attributes = request.attributes ?? {};
    const context = attributes.context_extensions ?? {};
    try {
      const http = attributes.request?.http;
      const decision = await decide({ headers: http?.headers ?? {}, path: http?.path ?? '/' }, context, {
        index,
        sources: this.sources,
        secret: this.options.secret,
        nowMs: this.now(),
      });
      const reason = decision.allow ? decision.reason : decision.failure.reason;
      this.metrics.recordCheck(decision.allow ? 'allow' : 'deny', reason, performance.now() - started);
      return checkResponse(decision);
    } catch (err) {
      // Never log the request: its headers carry the credential.
      this.log.error('authz check failed', { route: context[AUTHZ_CONTEXT.route], error: err instanceof Error ? err.name : 'unknown' });
      this.metrics.recordCheck('error', 'internal', performance.now() - started);
      return unavailable('internal');
    }
  }

  /** Serves gRPC on host:port (0 picks one); resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    const server = new UnaryGrpcServer({
      maxMessageBytes: 1024 * 1024,
      onHandlerError: (path, err) => this.log.error('authz call failed', { path, error: err instanceof Error ? err.name : 'unknown' }),
    });
    server.handle(CHECK_PATH, (bytes) => this.check(this.decode(bytes)).then(encodeCheckResponse));
    this.server = server;
    return server.listen(host, port);
  }

  /** A CheckRequest Envoy would never send is the caller's error, answered INVALID_ARGUMENT (and the route's on_error decides). */
  private decode(bytes: Buffer): WireCheckRequest {
    try {
      return decodeCheckRequest(bytes);
    } catch (err) {
      this.log.warn('authz: malformed CheckRequest', { error: err instanceof Error ? err.message : 'unknown' });
      throw new GrpcError(GrpcStatus.INVALID_ARGUMENT, 'malformed CheckRequest');
    }
  }

  /** Stops serving (in-flight checks finish) and stops JWKS refreshes. */
  async close(): Promise<void> {
    this.sources.close();
    const server = this.server;
    this.server = undefined;
    await server?.close(2_000);
  }
}
