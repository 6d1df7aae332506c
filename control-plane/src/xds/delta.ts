// Incremental (delta) ADS: responses carry only added/changed resources and the
// names of removed ones; the client's versions are tracked per resource.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { WILDCARD_TYPES, isKnownType, setVersion, type ResourceSet, type TypeUrl, type XdsResource } from './resources.ts';
import { AdsStream, sortedResources, type StreamContext } from './stream.ts';
import type { PlannedPush } from './stream-state.ts';
import type { DeltaRequest, DeltaResponse } from './wire.ts';

export class DeltaStream extends AdsStream {
  /** Every response sent, for tests and debugging of what went on the wire. */
  readonly sent: Array<{ typeUrl: string; names: string[]; removed: string[] }> = [];

  constructor(ctx: StreamContext, private readonly call: ServerDuplexStream<DeltaRequest, DeltaResponse>, private readonly recordSent = false) {
    super(ctx, 'delta');
    this.attach(call, (request: DeltaRequest) => this.onRequest(request));
  }

  private onRequest(request: DeltaRequest): void {
    if (!this.identify(request.node)) return;
    const type = request.type_url ?? '';
    if (!isKnownType(type)) return;
    if (!this.settle(type, request.response_nonce, request.error_detail)) return;
    const state = this.state.state(type);
    if (!state.requested) this.firstRequest(type, request);
    else this.updateSubscription(type, request);
    if (!this.withinLimits()) return;
    this.pump();
  }

  private firstRequest(type: TypeUrl, request: DeltaRequest): void {
    const state = this.state.state(type);
    const subscribe = request.resource_names_subscribe ?? [];
    state.requested = true;
    state.names = WILDCARD_TYPES.has(type) && (subscribe.length === 0 || subscribe.includes('*'))
      ? undefined
      : new Set(subscribe.filter((name) => name !== '*'));
    // On reconnect the client says what it already has; send only what differs.
    const initial = request.initial_resource_versions ?? {};
    this.claim(Object.keys(initial));
    const known = new Map<string, XdsResource>();
    for (const name of Object.keys(initial).sort()) {
      known.set(name, { typeUrl: type, name, version: initial[name]!, value: new Uint8Array() });
    }
    state.acked = known;
    state.answered = known.size > 0;
    if (known.size > 0) this.state.resumed = true;
  }

  private updateSubscription(type: TypeUrl, request: DeltaRequest): void {
    const state = this.state.state(type);
    const subscribe = request.resource_names_subscribe ?? [];
    const unsubscribe = request.resource_names_unsubscribe ?? [];
    if (subscribe.length === 0 && unsubscribe.length === 0) return;
    if (subscribe.includes('*')) state.names = undefined;
    else if (state.names) for (const name of subscribe) state.names.add(name);
    if (unsubscribe.length > 0) {
      if (state.names) for (const name of unsubscribe) state.names.delete(name);
      // The client dropped these itself: forget them so a later subscribe re-sends.
      const acked = new Map(state.acked);
      for (const name of unsubscribe) acked.delete(name);
      state.acked = acked;
    }
    // A new name needs an answer even if we have nothing for it.
    if (subscribe.length > 0) state.answered = false;
  }

  protected writeBacklog(): number {
    return this.call.writableLength;
  }

  protected send(push: PlannedPush, nonce: string): void {
    const known = this.state.state(push.type).acked;
    const changed = changedResources(known, push.set);
    const removed = [...known.keys()].filter((name) => !push.set.has(name)).sort();
    if (this.recordSent) this.sent.push({ typeUrl: push.type, names: changed.map((r) => r.name), removed });
    this.call.write({
      system_version_info: setVersion(push.set),
      resources: changed.map((r) => ({ name: r.name, version: r.version, resource: { type_url: r.typeUrl, value: r.value } })),
      type_url: push.type,
      removed_resources: removed,
      nonce,
    });
  }
}

function changedResources(known: ResourceSet, next: ResourceSet): XdsResource[] {
  return sortedResources(next).filter((r) => known.get(r.name)?.version !== r.version);
}
