// State-of-the-world ADS: every response carries the whole subscribed set.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { WILDCARD_TYPES, isKnownType, setVersion } from './resources.ts';
import { AdsStream, sortedResources, type StreamContext } from './stream.ts';
import type { PlannedPush } from './stream-state.ts';
import type { SotwRequest, SotwResponse } from './wire.ts';

export class SotwStream extends AdsStream {
  constructor(ctx: StreamContext, private readonly call: ServerDuplexStream<SotwRequest, SotwResponse>) {
    super(ctx, 'sotw');
    call.on('data', (request: SotwRequest) => this.onRequest(request));
    call.on('end', () => { this.close(); call.end(); });
    call.on('error', () => this.close());
    call.on('cancelled', () => this.close());
  }

  private onRequest(request: SotwRequest): void {
    this.identify(request.node);
    const type = request.type_url ?? '';
    if (!isKnownType(type)) return;
    if (!this.settle(type, request.response_nonce, request.error_detail)) return;
    const state = this.state.state(type);
    state.requested = true;
    state.names = subscription(type, request.resource_names ?? []);
    this.pump();
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

/** Wildcard types with no names (or `*`) mean "everything"; otherwise exactly the names. */
function subscription(type: string, names: string[]): Set<string> | undefined {
  if (WILDCARD_TYPES.has(type) && (names.length === 0 || names.includes('*'))) return undefined;
  return new Set(names);
}
