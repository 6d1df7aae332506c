// The ADS gRPC server: both protocols on one port, sharing cache and registry.
// Plaintext by default (loopback); with TLS options it serves TLS, and with a
// client CA it requires client certificates and hands each stream its peer's
// verified identity, which decides the node ids that stream may claim.
import * as grpc from '@grpc/grpc-js';
import type { SnapshotCache } from './cache.ts';
import { DeltaStream } from './delta.ts';
import { peerIdentity, DEFAULT_NODE_ID_PATTERN } from './peer-identity.ts';
import type { NodeRegistry } from './registry.ts';
import { SotwStream } from './sotw.ts';
import { silentLogger, type AdsStream, type Logger, type StreamContext, type XdsObserver } from './stream.ts';
import { ADS_SERVICE, type DeltaRequest, type DeltaResponse, type SotwRequest, type SotwResponse } from './wire.ts';

export interface AdsTlsOptions {
  /** Server certificate chain (PEM), leaf first. */
  cert: Buffer;
  key: Buffer;
  /** CA bundle that client certificates must chain to; when set, a client certificate is required. */
  clientCa?: Buffer;
  /** How a node id relates to its certificate identity (see peer-identity.ts); default `{identity}`. */
  nodeIdPattern?: string;
}

/** Bounds every client of the port meets, whoever it is. */
export interface AdsLimits {
  /** Largest request message accepted; a bigger one ends that stream with RESOURCE_EXHAUSTED. */
  maxReceiveBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: an Envoy needs one ADS stream per connection. */
  maxStreamsPerConnection: number;
  /** A connection with no open stream for this long is closed. */
  maxIdleMs: number;
}

export const DEFAULT_ADS_LIMITS: AdsLimits = {
  maxReceiveBytes: 4 * 1024 * 1024,
  maxStreamsPerConnection: 16,
  maxIdleMs: 5 * 60_000,
};

export interface AdsServerOptions {
  cache: SnapshotCache;
  registry: NodeRegistry;
  log?: Logger;
  /** Keep every delta stream's sent responses (tests assert on what went on the wire). */
  recordDeltaSends?: boolean;
  /** Serve TLS (and require client certificates when `clientCa` is set); default plaintext. */
  tls?: AdsTlsOptions;
  limits?: Partial<AdsLimits>;
  /** Told of every stream's pushes, ACKs and NACKs (telemetry's XdsMetrics fits). */
  observer?: XdsObserver;
  /**
   * A stream with a push unanswered (or writes not draining) for this long is
   * reported slow in the registry and in /v1/fleet; default DEFAULT_SLOW_AFTER_MS.
   */
  slowAfterMs?: number;
  /** More gRPC services on the same port, e.g. the metrics sink Envoy reaches over its xDS cluster. */
  services?: ReadonlyArray<{ definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }>;
}

type AnyCall = grpc.ServerDuplexStream<unknown, unknown>;

/** An Envoy applies a push in milliseconds; five seconds without an answer is a stream that cannot keep up. */
export const DEFAULT_SLOW_AFTER_MS = 5_000;

export class AdsServer {
  private readonly server: grpc.Server;
  readonly streams = new Set<AdsStream>();
  private readonly ctx: StreamContext;
  /** Judges every stream's pace a few times per threshold (a scan of in-flight types; nothing is sent). */
  private readonly paceTimer: NodeJS.Timeout;

  constructor(private readonly options: AdsServerOptions) {
    const limits = { ...DEFAULT_ADS_LIMITS, ...options.limits };
    this.server = new grpc.Server({
      // Server pings find dead peers; a peer that does not answer in 10 s is dropped.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_connection_idle_ms': limits.maxIdleMs,
      'grpc.max_receive_message_length': limits.maxReceiveBytes,
      'grpc.max_concurrent_streams': limits.maxStreamsPerConnection,
    });
    this.ctx = { cache: options.cache, registry: options.registry, log: options.log ?? silentLogger, observer: options.observer };
    this.server.addService(ADS_SERVICE, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<SotwRequest, SotwResponse>) =>
        this.track(new SotwStream(this.contextFor(call), call), call),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaRequest, DeltaResponse>) =>
        this.track(new DeltaStream(this.contextFor(call), call, options.recordDeltaSends), call),
    });
    for (const service of options.services ?? []) this.server.addService(service.definition, service.implementation);
    const slowAfterMs = options.slowAfterMs ?? DEFAULT_SLOW_AFTER_MS;
    this.paceTimer = setInterval(() => {
      const now = Date.now();
      for (const stream of this.streams) stream.checkPace(now, slowAfterMs);
    }, Math.max(25, Math.min(1_000, slowAfterMs / 4)));
    this.paceTimer.unref();
  }

  /** Binds to host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, this.credentials(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  /** Stops accepting streams and ends the open ones. */
  async close(): Promise<void> {
    clearInterval(this.paceTimer);
    for (const stream of this.streams) stream.close();
    this.server.forceShutdown();
  }

  private credentials(): grpc.ServerCredentials {
    const tls = this.options.tls;
    if (!tls) return grpc.ServerCredentials.createInsecure();
    // With a client CA, Node's TLS server refuses a handshake without a certificate
    // that chains to it (requestCert + rejectUnauthorized), before any gRPC.
    return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
  }

  /** The stream's context: with client certificates, the peer it may speak for and how it is refused. */
  private contextFor(call: AnyCall): StreamContext {
    const tls = this.options.tls;
    if (!tls?.clientCa) return this.ctx;
    const identity = peerIdentity(call.getAuthContext().sslPeerCertificate, tls.nodeIdPattern ?? DEFAULT_NODE_ID_PATTERN);
    let refused = false;
    return {
      ...this.ctx,
      peer: {
        // No verified certificate (cannot happen past the handshake): admit nothing.
        admits: (nodeId) => identity?.admits(nodeId) ?? false,
        refuse: (nodeId) => {
          if (refused) return;
          refused = true;
          this.ctx.log.warn('xds: node id does not match the client certificate', { nodeId, identities: identity?.identities ?? [] });
          // The call's 'error' handler sends this status and ends the call; the stream closes with it.
          call.emit('error', {
            code: grpc.status.PERMISSION_DENIED,
            details: `node id ${JSON.stringify(nodeId)} is not allowed for this client certificate`,
          });
        },
      },
    };
  }

  private track(stream: AdsStream, call: AnyCall): void {
    this.streams.add(stream);
    const forget = () => this.streams.delete(stream);
    call.on('end', forget);
    call.on('error', forget);
    call.on('cancelled', forget);
  }
}
