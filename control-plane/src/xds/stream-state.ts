// Per-stream bookkeeping shared by the state-of-the-world and delta protocols:
// what the client subscribed to, what it has acknowledged, what is in flight,
// and which set of resources it should get next. No I/O here.
//
// Make-before-break, for any update:
//   1. clusters and endpoints go out as a union of old and new (nothing removed);
//   2. listeners and routes follow once the client ACKed the new clusters and
//      the endpoints named after them;
//   3. clusters and endpoints that nothing references any more are removed only
//      after the client ACKed the new listeners and routes.
// The rate-limit config type stands apart: it goes out as soon as it is asked
// for, waits for no other type, and counts toward sync only for a client that
// asked for it (Envoys never do; a rate-limit service asks for nothing else).
import {
  ENVOY_TYPES, EMPTY_SET, PUSH_ORDER, TYPE, filterSet, sameSet, unionSet,
  type ResourceSet, type TypeUrl,
} from './resources.ts';
import { snapshotSet, type Snapshot } from './snapshot.ts';

export interface InFlight {
  nonce: string;
  set: ResourceSet;
  snapshot: Snapshot;
}

export interface TypeState {
  /** Named subscription; undefined while the client asks for everything (wildcard). */
  names: Set<string> | undefined;
  acked: ResourceSet;
  /** Version string of the last response the client ACKed (what Envoy reports as applied). */
  ackedVersion: string;
  inFlight?: InFlight;
  /** Nonce of the newest response sent for this type. */
  lastNonce?: string;
  /** The client has asked for this type at least once. */
  requested: boolean;
  /** At least one response for this type went out on this stream. */
  answered: boolean;
}

export interface PlannedPush {
  type: TypeUrl;
  set: ResourceSet;
  snapshot: Snapshot;
}

export type AckResult =
  | { kind: 'ack'; type: TypeUrl; inFlight: InFlight }
  | { kind: 'nack'; type: TypeUrl; inFlight: InFlight }
  | { kind: 'current' }
  | { kind: 'stale' };

const CLUSTER_SIDE: ReadonlySet<TypeUrl> = new Set([TYPE.cluster, TYPE.endpoint]);
/** Types that point at clusters, so wait for them. */
const ROUTE_SIDE: ReadonlySet<TypeUrl> = new Set([TYPE.listener, TYPE.route]);

export class StreamState {
  readonly types = new Map<TypeUrl, TypeState>();
  /** The client reconnected holding config from before (so removals must wait for its routes). */
  resumed = false;

  constructor() {
    for (const type of PUSH_ORDER) {
      this.types.set(type, { names: undefined, acked: EMPTY_SET, ackedVersion: '', requested: false, answered: false });
    }
  }

  state(type: TypeUrl): TypeState {
    return this.types.get(type)!;
  }

  /**
   * Settles the in-flight response a request refers to. A request naming the
   * newest nonce when nothing is in flight is current (e.g. a subscription
   * change); one naming an older nonce is stale and changes nothing.
   */
  settle(type: TypeUrl, nonce: string, errorDetail: boolean): AckResult {
    const state = this.state(type);
    const inFlight = state.inFlight;
    if (!inFlight) return nonce === state.lastNonce ? { kind: 'current' } : { kind: 'stale' };
    if (inFlight.nonce !== nonce) return { kind: 'stale' };
    state.inFlight = undefined;
    if (errorDetail) return { kind: 'nack', type, inFlight };
    state.acked = inFlight.set;
    return { kind: 'ack', type, inFlight };
  }

  /** The next response to send, in make-before-break order, or undefined when nothing is due. */
  nextPush(snapshot: Snapshot | undefined): PlannedPush | undefined {
    if (!snapshot) return undefined;
    for (const type of PUSH_ORDER) {
      const state = this.state(type);
      if (!state.requested || state.inFlight) continue;
      if (ROUTE_SIDE.has(type) && !this.clustersReady(snapshot)) continue;
      const set = this.target(type, snapshot);
      if (state.answered && sameSet(set, state.acked)) continue;
      return { type, set, snapshot };
    }
    return undefined;
  }

  /** The client holds exactly the snapshot for every type it asked for. */
  isSynced(snapshot: Snapshot): boolean {
    const envoyClient = [...ENVOY_TYPES].some((type) => this.state(type).requested) || !this.state(TYPE.rateLimitConfig).requested;
    for (const type of PUSH_ORDER) {
      const state = this.state(type);
      if (state.inFlight) return false;
      const wanted = filterSet(snapshotSet(snapshot, type), state.names);
      if (!state.requested) {
        // Envoys never ask for rate-limit config; a rate-limit service asks for nothing else.
        if (!ENVOY_TYPES.has(type) || !envoyClient) continue;
        if (wanted.size > 0 && state.names === undefined && type !== TYPE.endpoint) return false;
        continue;
      }
      if (!sameSet(state.acked, wanted)) return false;
    }
    return true;
  }

  private target(type: TypeUrl, snapshot: Snapshot): ResourceSet {
    const state = this.state(type);
    const next = snapshotSet(snapshot, type);
    if (CLUSTER_SIDE.has(type) && !this.routesCaughtUp(snapshot)) {
      return filterSet(unionSet(state.acked, next), state.names);
    }
    return filterSet(next, state.names);
  }

  /** Listeners and routes the client holds match the snapshot (so old clusters may go). */
  private routesCaughtUp(snapshot: Snapshot): boolean {
    for (const type of [TYPE.listener, TYPE.route] as const) {
      const state = this.state(type);
      if (!state.requested) {
        // A resuming client's old routes may still use clusters we would drop.
        if (this.resumed && snapshotSet(snapshot, type).size > 0) return false;
        continue;
      }
      if (state.inFlight) return false;
      if (!sameSet(state.acked, filterSet(snapshotSet(snapshot, type), state.names))) return false;
    }
    return true;
  }

  /** New clusters, and the endpoints named after them, are ACKed: routes may point at them. */
  private clustersReady(snapshot: Snapshot): boolean {
    const clusters = this.state(TYPE.cluster);
    const endpoints = this.state(TYPE.endpoint);
    if (clusters.inFlight || endpoints.inFlight) return false;
    // An Envoy (wildcard listeners) always subscribes to clusters too, but after
    // a reconnect its requests may come in any order: wait for the cluster
    // request rather than point routes at clusters it does not have yet. A
    // client that names its listeners (gRPC) asks for clusters only later.
    if (!clusters.requested) return this.state(TYPE.listener).names !== undefined;
    const newClusters = filterSet(snapshotSet(snapshot, TYPE.cluster), clusters.names);
    const newEndpoints = snapshotSet(snapshot, TYPE.endpoint);
    for (const [name, cluster] of newClusters) {
      if (clusters.acked.get(name)?.version !== cluster.version) return false;
      const assignment = newEndpoints.get(name);
      if (assignment && endpoints.acked.get(name)?.version !== assignment.version) return false;
    }
    return true;
  }
}
