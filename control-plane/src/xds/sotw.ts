// State-of-the-world ADS: every response carries the whole subscribed set.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { WILDCARD_TYPES, isKnownType, setVersion, type TypeUrl } from './resources.ts';
import { AdsStream, sortedResources, type StreamContext } from './stream.ts';
import type { PlannedPush } from './stream-state.ts';
import type { SotwRequest, SotwResponse } from './wire.ts';

export class SotwStream extends AdsStream {
  constructor(ctx: StreamContext, private readonly call: ServerDuplexStream<SotwRequest, SotwResponse>) {
    super(ctx, 'sotw');
    this.attach(call, (request: SotwRequest) => this.onRequest(request));
  }

  private onRequest(request: SotwRequest): void {
    if (!this.identify(request.node)) return;
    const type = request.type_url ?? '';
    if (!isKnownType(type)) return;
    if (!this.settle(type, request.response_nonce, request.error_detail)) return;
    const state = this.state.state(type);
    if (!state.requested) this.resume(type, request.version_info);
    state.names = subscription(type, request.resource_names ?? [], state.requested ? state.names : undefined, !state.requested);
    state.requested = true;
    if (!this.withinLimits()) return;
    this.pump();
  }

  /** A reconnecting client reports the version it holds; start from that set if we know it. */
  private resume(type: TypeUrl, version: string | undefined): void {
    if (!version || this.group === undefined) return;
    const held = this.ctx.cache.recall(this.group, version);
    if (!held) return;
    const state = this.state.state(type);
    state.acked = held;
    state.answered = true;
    if (held.size > 0) this.state.resumed = true;
  }

  protected writeBacklog(): number {
    return this.call.writableLength;
  }

  protected send(push: PlannedPush, nonce: string): void {
    this.call.write({
      version_info: setVersion(push.set),
      resources: sortedResources(push.set).map((r) => ({ type_url: r.typeUrl, value: r.value })),
      type_url: push.type,
      nonce,
    });
  }
}

/**
 * Wildcard types asked for with no names (or `*`) on the first request mean
 * "everything", and stay so while the client keeps sending no names. Once the
 * client has named resources, an empty list means "none" (it unsubscribed).
 */
export function subscription(type: string, names: string[], previous: Set<string> | undefined, first: boolean): Set<string> | undefined {
  if (names.includes('*')) return undefined;
  const wildcardSoFar = first || previous === undefined;
  if (WILDCARD_TYPES.has(type) && names.length === 0 && wildcardSoFar) return undefined;
  return new Set(names);
}
