// One ADS stream: the part both protocols share. It learns the node from the
// first request, registers it, reacts to cache updates for its group, settles
// ACKs/NACKs, and pushes what StreamState says is due, one response per type
// in flight.
//
// Per-stream bounds (every client of the port meets them, whoever it is):
// a node id or group longer than MAX_NODE_FIELD_BYTES is refused
// (INVALID_ARGUMENT: truncating could make two nodes one); subscribed names
// (plus names a delta client claims to hold on resume) beyond
// SUBSCRIPTION_LIMITS end the stream (RESOURCE_EXHAUSTED); a NACK's
// error_detail is kept truncated to MAX_ERROR_DETAIL_CHARS. A closed stream
// leaves nothing behind: its cache membership and verdicts, its registry
// entry and its cache listener go with it.
//
// Memory per stream stays bounded however slow the client: at most one
// response per type is in flight, and nothing more is queued for a type until
// the client answers it, so a client that stops reading holds at most one
// response per type in its write buffer; writes never wait for a peer, so a
// stalled stream delays no other. checkPace (called by the server's sweep)
// reports a stream that is behind to the registry (see SlowMark).
import { status as grpcStatus, type ServerDuplexStream } from '@grpc/grpc-js';
import type { SnapshotCache } from './cache.ts';
import { nodeCounts, type NodeRegistry, type Protocol, type SlowMark } from './registry.ts';
import { setVersion, type ResourceSet, type TypeUrl } from './resources.ts';
import type { Snapshot } from './snapshot.ts';
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
  /** Set when xDS runs with client certificates (server.ts): the verified peer, and how to refuse it. */
  peer?: { admits(nodeId: string): boolean; refuse(nodeId: string): void };
  /** Told of pushes, ACKs, NACKs and closes (metrics hang off this, not off the streams). */
  observer?: XdsObserver;
}

/** go-control-plane's callbacks shape: what a stream reports as it goes. */
export interface XdsObserver {
  pushed(streamId: number, typeUrl: string): void;
  acked(streamId: number, typeUrl: string): void;
  nacked(streamId: number, typeUrl: string): void;
  streamClosed(streamId: number): void;
}

let nextStreamId = 1;

/** Longest node id or node cluster (group) accepted, in UTF-8 bytes. */
export const MAX_NODE_FIELD_BYTES = 256;
/** How much of a NACK's error message is kept. */
export const MAX_ERROR_DETAIL_CHARS = 2_048;
/** Subscribed (or claimed) resource names per stream, over all types. */
export const SUBSCRIPTION_LIMITS = { names: 20_000, bytes: 2 * 1024 * 1024 };

export abstract class AdsStream {
  readonly id = nextStreamId++;
  readonly state = new StreamState();
  protected group?: string;
  private nonceCounter = 0;
  private closed = false;
  /** When the response now in flight for each type went out (ms since epoch). */
  private readonly sentAt = new Map<TypeUrl, number>();
  /** Since when the write buffer has held responses not yet written out (undefined: it is empty). */
  private backlogSince?: number;
  /** Whether the registry has this stream marked slow (so an answer clears it at once). */
  private markedSlow = false;
  /** Names a delta client said it holds on resume (count and bytes), for the subscription bound. */
  private readonly claimed = { names: 0, bytes: 0 };
  /** Ends the call with an error status (set by attach). */
  private endWith: (code: grpcStatus, details: string) => void = () => {};
  private readonly onCacheUpdate = (group: string) => {
    if (group === this.group || group === '*') this.pump();
  };

  constructor(
    protected readonly ctx: StreamContext,
    private readonly protocol: Protocol,
  ) {}

  /** Feeds the call's requests to `onRequest` and closes the stream when the call ends. */
  protected attach<Req>(call: ServerDuplexStream<Req, unknown>, onRequest: (request: Req) => void): void {
    this.endWith = (code, details) => {
      // The call's own 'error' handler sends this status and ends the call.
      call.emit('error', { code, details });
    };
    call.on('data', (request: Req) => {
      if (!this.closed) onRequest(request);
    });
    call.on('end', () => {
      this.close();
      call.end();
    });
    call.on('error', () => this.close());
    call.on('cancelled', () => this.close());
  }

  /** Sends one planned response on the wire (protocol-specific). */
  protected abstract send(push: PlannedPush, nonce: string): void;

  /** Responses handed to the call and not yet written out to the peer. */
  protected abstract writeBacklog(): number;

  /**
   * Marks the stream slow in the registry when a push has gone unanswered for
   * `slowAfterMs`, or its write buffer has not emptied for that long; clears
   * the mark once it keeps up again.
   */
  checkPace(now: number, slowAfterMs: number): void {
    if (this.closed || this.group === undefined) return;
    const backlog = this.writeBacklog();
    if (backlog === 0) this.backlogSince = undefined;
    else this.backlogSince ??= now;
    const pending = [...this.state.types].filter(([, state]) => state.inFlight !== undefined).map(([type]) => type);
    const oldest = Math.min(...pending.map((type) => this.sentAt.get(type) ?? now));
    const behind = now - oldest >= slowAfterMs || (this.backlogSince !== undefined && now - this.backlogSince >= slowAfterMs);
    const mark: SlowMark | undefined = behind
      ? { pendingSince: new Date(Number.isFinite(oldest) ? oldest : this.backlogSince!).toISOString(), pendingTypes: pending, writeBacklog: backlog }
      : undefined;
    this.markedSlow = mark !== undefined;
    this.ctx.registry.recordSlow(this.id, mark);
  }

  /** Learns the node from the first request; false when the stream is (or was just) refused. */
  protected identify(node: WireNode | undefined): boolean {
    if (this.closed) return false;
    if (this.group !== undefined) return true;
    const nodeId = node?.id ?? '';
    const cluster = node?.cluster ?? '';
    if (Buffer.byteLength(nodeId) > MAX_NODE_FIELD_BYTES || Buffer.byteLength(cluster) > MAX_NODE_FIELD_BYTES) {
      this.refuse(grpcStatus.INVALID_ARGUMENT, `node id and node cluster are limited to ${MAX_NODE_FIELD_BYTES} bytes`);
      return false;
    }
    // A node id its certificate does not vouch for never registers: the call ends PERMISSION_DENIED.
    if (this.ctx.peer && !this.ctx.peer.admits(node?.id ?? '')) {
      this.ctx.peer.refuse(node?.id ?? '');
      return false;
    }
    this.group = node?.cluster || '*';
    const registered = this.ctx.registry.connect({
      streamId: this.id,
      nodeId: node?.id || `anonymous-${this.id}`,
      group: this.group,
      protocol: this.protocol,
      connectedAt: new Date().toISOString(),
      authenticated: this.ctx.peer !== undefined,
    }, () => this.refuse(grpcStatus.ALREADY_EXISTS, 'a newer stream claimed this node id'));
    this.ctx.cache.join(this.id, this.group, nodeCounts(registered));
    this.ctx.cache.on('updated', this.onCacheUpdate);
    return true;
  }

  /** Ends the stream with an error status; it registers and receives nothing more. */
  protected refuse(code: grpcStatus, details: string): void {
    if (this.closed) return;
    this.ctx.log.warn('xds: stream refused', { streamId: this.id, code, details });
    this.close();
    this.endWith(code, details);
  }

  /** Counts names a delta client claims to hold (initial_resource_versions) toward the bound. */
  protected claim(names: Iterable<string>): void {
    for (const name of names) {
      this.claimed.names += 1;
      this.claimed.bytes += Buffer.byteLength(name);
    }
  }

  /** Checks the subscription bound; refuses the stream (and returns false) past it. */
  protected withinLimits(): boolean {
    let names = this.claimed.names;
    let bytes = this.claimed.bytes;
    for (const state of this.state.types.values()) {
      for (const name of state.names ?? []) {
        names += 1;
        bytes += Buffer.byteLength(name);
      }
    }
    if (names <= SUBSCRIPTION_LIMITS.names && bytes <= SUBSCRIPTION_LIMITS.bytes) return true;
    this.refuse(grpcStatus.RESOURCE_EXHAUSTED, `at most ${SUBSCRIPTION_LIMITS.names} resource names (${SUBSCRIPTION_LIMITS.bytes} bytes) per stream`);
    return false;
  }

  /** Applies the nonce of a request; returns false for a stale nonce (the request is then ignored). */
  protected settle(type: TypeUrl, nonce: string | undefined, error: WireStatus | undefined): boolean {
    if (!nonce) return true;
    const result = this.state.settle(type, nonce, error !== undefined && error !== null);
    if (result.kind === 'stale') return false;
    if (result.kind === 'current') return true;
    this.sentAt.delete(type);
    if (this.markedSlow) this.checkPace(Date.now(), Number.POSITIVE_INFINITY); // answered: clear the mark now, the sweep re-judges
    if (result.kind === 'nack') {
      const message = truncate(error?.message || 'rejected without detail', MAX_ERROR_DETAIL_CHARS);
      this.ctx.log.warn('xds: envoy rejected config', { streamId: this.id, type, revision: result.inFlight.snapshot.revision, message });
      this.ctx.registry.recordNack(this.id, {
        typeUrl: type,
        revision: result.inFlight.snapshot.revision,
        message,
        at: new Date().toISOString(),
      });
      this.ctx.cache.markRejected(this.id, result.inFlight.snapshot);
      this.ctx.observer?.nacked(this.id, type);
      return true;
    }
    this.ctx.registry.recordAck(this.id, type, setVersion(result.inFlight.set));
    this.ctx.observer?.acked(this.id, type);
    if (this.ctx.registry.counts(this.id)) this.ctx.cache.trust(this.id);
    return true;
  }

  /** Sends every response that is due now. */
  protected pump(): void {
    if (this.group === undefined || this.closed) return;
    const snapshot = this.ctx.cache.servableFor(this.id);
    for (let push = this.state.nextPush(snapshot); push; push = this.state.nextPush(snapshot)) {
      const nonce = `${this.id}-${++this.nonceCounter}`;
      const state = this.state.state(push.type);
      state.inFlight = { nonce, set: push.set, snapshot: push.snapshot };
      state.lastNonce = nonce;
      state.answered = true;
      this.ctx.cache.remember(this.group, push.set);
      this.sentAt.set(push.type, Date.now());
      this.send(push, nonce);
      this.ctx.observer?.pushed(this.id, push.type);
    }
    this.noteSynced(snapshot);
  }

  /**
   * Records that the node holds `snapshot` in full. Checked after every pump,
   * not only on ACKs: a relabelled snapshot (same content, newer revision) and
   * a delta client resuming with exactly our config need no push to be in sync.
   */
  private noteSynced(snapshot: Snapshot | undefined): void {
    if (!snapshot || !this.state.isSynced(snapshot)) return;
    // A resumed client holding our config has shown what an ACK shows.
    if (this.state.resumed) this.ctx.registry.recordConfirmed(this.id);
    if (!this.ctx.registry.counts(this.id)) return;
    this.ctx.cache.trust(this.id);
    this.ctx.registry.recordSynced(this.id, snapshot.revision);
    this.ctx.cache.markAccepted(this.id, snapshot);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.cache.off('updated', this.onCacheUpdate);
    this.ctx.cache.leave(this.id);
    this.ctx.registry.disconnect(this.id);
    this.ctx.observer?.streamClosed(this.id);
  }
}

function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  // Do not leave half a surrogate pair at the cut.
  const cut = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, cut)}… (truncated)`;
}

export function sortedResources(set: ResourceSet) {
  return [...set.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
