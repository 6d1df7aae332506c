// The envoy.service.auth.v3.Authorization/Check gRPC service. It is handed
// AuthzInput snapshots (State + API-key hashes) by whoever runs it and answers
// every check from memory; only JWKS refreshes touch the network.
import { performance } from 'node:perf_hooks';
import { GrpcError, UnaryGrpcServer } from '../grpc/unary-server.ts';
import { GrpcStatus } from '../grpc/framing.ts';
import { AUTHZ_CONTEXT } from '../model/contract.ts';
import type { CheckResponse } from '../proto/codec.ts';
import { AnswerCache, answerKey, type Answer } from './answers.ts';
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
  /** Hand back allows already given (answers.ts); default true. Off only to compare against. */
  cacheAnswers?: boolean;
}

/** A check's response and, for an allow, what the answer cache keeps beside its bytes. */
interface Decided {
  response: CheckResponse;
  allowed?: Omit<Answer, 'bytes'>;
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
  private answers = new AnswerCache();
  private readonly cacheAnswers: boolean;

  constructor(private readonly options: AuthzServiceOptions = {}) {
    this.log = options.log ?? quietLog;
    this.now = options.now ?? Date.now;
    this.cacheAnswers = options.cacheAnswers ?? true;
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
    // Answers were given under the old index; a check in flight keeps the old cache.
    this.answers = new AnswerCache();
  }

  /** The decision for `request` as a CheckResponse, decided afresh (no answer cache). */
  async check(request: WireCheckRequest): Promise<CheckResponse> {
    return (await this.decideFor(request, this.index, undefined)).response;
  }

  /**
   * The encoded CheckResponse for `request`: an allow already given for the same
   * route and credential is handed back as it was (answers.ts says when that is
   * sound); anything else is decided afresh, and a fresh allow is kept.
   */
  answer(request: WireCheckRequest): Uint8Array | Promise<Uint8Array> {
    const started = performance.now();
    const index = this.index;
    const answers = this.answers;
    const attributes = request.attributes ?? {};
    const http = attributes.request?.http;
    const key = index && this.cacheAnswers ? answerKey({ headers: http?.headers ?? {}, path: http?.path ?? '/' }, attributes.context_extensions ?? {}) : undefined;
    if (key !== undefined) {
      const hit = answers.get(key, this.now());
      if (hit) {
        this.metrics.recordCheck('allow', hit.reason, performance.now() - started);
        this.metrics.recordAnswerFromCache();
        return hit.bytes;
      }
    }
    return this.decideFor(request, index, started).then(({ response, allowed }) => {
      const bytes = encodeCheckResponse(response);
      if (key !== undefined && allowed) answers.add(key, { bytes, reason: allowed.reason, decidedAtMs: allowed.decidedAtMs, validity: allowed.validity });
      return bytes;
    });
  }

  private async decideFor(request: WireCheckRequest, index: AuthzIndex | undefined, started = performance.now()): Promise<Decided> {
    if (!index) {
      this.metrics.recordCheck('error', 'no_state', performance.now() - started);
      return { response: unavailable('no_state') };
    }
    const attributes = request.attributes ?? {};
    const context = attributes.context_extensions ?? {};
    try {
      const http = attributes.request?.http;
      const nowMs = this.now();
      const decision = await decide({ headers: http?.headers ?? {}, path: http?.path ?? '/' }, context, {
        index,
        sources: this.sources,
        secret: this.options.secret,
        nowMs,
      });
      const reason = decision.allow ? decision.reason : decision.failure.reason;
      this.metrics.recordCheck(decision.allow ? 'allow' : 'deny', reason, performance.now() - started);
      const allowed = decision.allow ? { reason, decidedAtMs: nowMs, validity: decision.validity } : undefined;
      return { response: checkResponse(decision), allowed };
    } catch (err) {
      // Never log the request: its headers carry the credential.
      this.log.error('authz check failed', { route: context[AUTHZ_CONTEXT.route], error: err instanceof Error ? err.name : 'unknown' });
      this.metrics.recordCheck('error', 'internal', performance.now() - started);
      return { response: unavailable('internal') };
    }
  }

  /** Serves gRPC on host:port (0 picks one); resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    const server = new UnaryGrpcServer({
      maxMessageBytes: 1024 * 1024,
      onHandlerError: (path, err) => this.log.error('authz call failed', { path, error: err instanceof Error ? err.name : 'unknown' }),
    });
    server.handle(CHECK_PATH, (bytes) => this.answer(this.decode(bytes)));
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
