// The ADS gRPC server: both protocols on one port, sharing cache and registry.
import * as grpc from '@grpc/grpc-js';
import type { SnapshotCache } from './cache.ts';
import { DeltaStream } from './delta.ts';
import type { NodeRegistry } from './registry.ts';
import { SotwStream } from './sotw.ts';
import { silentLogger, type AdsStream, type Logger } from './stream.ts';
import { ADS_SERVICE, type DeltaRequest, type DeltaResponse, type SotwRequest, type SotwResponse } from './wire.ts';

export interface AdsServerOptions {
  cache: SnapshotCache;
  registry: NodeRegistry;
  log?: Logger;
  /** Keep every delta stream's sent responses (tests assert on what went on the wire). */
  recordDeltaSends?: boolean;
}

export class AdsServer {
  private readonly server = new grpc.Server({
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  });
  readonly streams = new Set<AdsStream>();

  constructor(private readonly options: AdsServerOptions) {
    const ctx = { cache: options.cache, registry: options.registry, log: options.log ?? silentLogger };
    this.server.addService(ADS_SERVICE, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<SotwRequest, SotwResponse>) =>
        this.track(new SotwStream(ctx, call), call),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaRequest, DeltaResponse>) =>
        this.track(new DeltaStream(ctx, call, options.recordDeltaSends), call),
    });
  }

  /** Binds to host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
  }

  /** Stops accepting streams and ends the open ones. */
  async close(): Promise<void> {
    for (const stream of this.streams) stream.close();
    this.server.forceShutdown();
  }

  private track(stream: AdsStream, call: grpc.ServerDuplexStream<unknown, unknown>): void {
    this.streams.add(stream);
    const forget = () => this.streams.delete(stream);
    call.on('end', forget);
    call.on('error', forget);
    call.on('cancelled', forget);
  }
}
