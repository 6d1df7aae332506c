// One ADS stream: the part both protocols share. It learns the node from the
// first request, registers it, reacts to cache updates for its group, settles
// ACKs/NACKs, and pushes what StreamState says is due, one response per type
// in flight.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { SnapshotCache } from './cache.ts';
import type { NodeRegistry, Protocol } from './registry.ts';
import { setVersion, type ResourceSet, type TypeUrl } from './resources.ts';
import { StreamState, type PlannedPush } from './stream-state.ts';
import type { WireNode, WireStatus } from './wire.ts';

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { info() {}, warn() {} };

export interface StreamContext {
  cache: SnapshotCache;
  registry: NodeRegistry;
  log: Logger;
}

let nextStreamId = 1;

export abstract class AdsStream {
  readonly id = nextStreamId++;
  readonly state = new StreamState();
  protected group?: string;
  private nonceCounter = 0;
  private readonly onCacheUpdate = (group: string) => {
    if (group === this.group || group === '*') this.pump();
  };

  constructor(
    protected readonly ctx: StreamContext,
    private readonly protocol: Protocol,
  ) {}

  /** Feeds the call's requests to `onRequest` and closes the stream when the call ends. */
  protected attach<Req>(call: ServerDuplexStream<Req, unknown>, onRequest: (request: Req) => void): void {
    call.on('data', onRequest);
    call.on('end', () => {
      this.close();
      call.end();
    });
    call.on('error', () => this.close());
    call.on('cancelled', () => this.close());
  }

  /** Sends one planned response on the wire (protocol-specific). */
  protected abstract send(push: PlannedPush, nonce: string): void;

  protected identify(node: WireNode | undefined): void {
    if (this.group !== undefined) return;
    this.group = node?.cluster || '*';
    this.ctx.registry.connect({
      streamId: this.id,
      nodeId: node?.id || `anonymous-${this.id}`,
      group: this.group,
      protocol: this.protocol,
      connectedAt: new Date().toISOString(),
    });
    this.ctx.cache.on('updated', this.onCacheUpdate);
  }

  /** Applies the nonce of a request; returns false for a stale nonce (the request is then ignored). */
  protected settle(type: TypeUrl, nonce: string | undefined, error: WireStatus | undefined): boolean {
    if (!nonce) return true;
    const result = this.state.settle(type, nonce, error !== undefined && error !== null);
    if (result.kind === 'stale') return false;
    if (result.kind === 'current') return true;
    const group = this.group ?? '*';
    if (result.kind === 'nack') {
      const message = error?.message ?? 'rejected without detail';
      this.ctx.log.warn('xds: envoy rejected config', { streamId: this.id, type, revision: result.inFlight.snapshot.revision, message });
      this.ctx.registry.recordNack(this.id, {
        typeUrl: type,
        revision: result.inFlight.snapshot.revision,
        message,
        at: new Date().toISOString(),
      });
      this.ctx.cache.markRejected(group, result.inFlight.snapshot);
      return true;
    }
    this.ctx.registry.recordAck(this.id, type, setVersion(result.inFlight.set));
    const servable = this.ctx.cache.servable(group);
    if (servable && this.state.isSynced(servable)) {
      this.ctx.registry.recordSynced(this.id, servable.revision);
      this.ctx.cache.markAccepted(group, servable);
    }
    return true;
  }

  /** Sends every response that is due now. */
  protected pump(): void {
    if (this.group === undefined) return;
    const snapshot = this.ctx.cache.servable(this.group);
    for (let push = this.state.nextPush(snapshot); push; push = this.state.nextPush(snapshot)) {
      const nonce = `${this.id}-${++this.nonceCounter}`;
      const state = this.state.state(push.type);
      state.inFlight = { nonce, set: push.set, snapshot: push.snapshot };
      state.lastNonce = nonce;
      state.answered = true;
      this.ctx.cache.remember(this.group, push.set);
      this.send(push, nonce);
    }
  }

  close(): void {
    this.ctx.cache.off('updated', this.onCacheUpdate);
    if (this.group !== undefined) this.ctx.registry.disconnect(this.id);
  }
}

export function sortedResources(set: ResourceSet) {
  return [...set.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
