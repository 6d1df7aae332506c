// Who is connected, what each Envoy has applied, and what it rejected. Read by
// the admin API's fleet status; written only by the ADS server.
//
// Node ids are unique among connected streams: a second stream claiming a live
// node id replaces the first, which is ended (an Envoy that reconnects before
// the server noticed its old stream died must not be locked out; with client
// certificates only the node itself can claim its id). Everything kept here
// is per connected stream and goes when the stream closes.
import type { TypeUrl } from './resources.ts';

export type Protocol = 'sotw' | 'delta';

export interface NackRecord {
  typeUrl: string;
  /** Snapshot revision the rejected response was built from. */
  revision: number;
  message: string;
  at: string;
}

export interface NodeStatus {
  streamId: number;
  nodeId: string;
  group: string;
  protocol: Protocol;
  connectedAt: string;
  /** True when the node id was checked against a verified client certificate (xDS with XDS_CLIENT_CA). */
  authenticated?: boolean;
  /** Per type, the version_info of the last response this node ACKed. */
  acked: Partial<Record<TypeUrl, string>>;
  /** The newest snapshot revision this node holds in full. */
  syncedRevision?: number;
  lastNack?: NackRecord;
  /** The node ACKed at least once (or was found holding our config on resume). */
  hasAcked: boolean;
  /** Set while the stream is behind: a push unanswered past the server's threshold (see SlowMark). */
  slow?: SlowMark;
}

/** A stream that is not keeping up: what it has left unanswered, and since when. */
export interface SlowMark {
  /** When the oldest push it has not answered went out. */
  pendingSince: string;
  /** The types with a push in flight. */
  pendingTypes: string[];
  /** Responses handed to the transport and not yet written out (a client not reading). */
  writeBacklog: number;
}

export interface RevisionTally {
  accepted: number;
  rejected: number;
}

/** Revisions whose accept/reject counts are kept (older ones are dropped). */
const TALLY_LIMIT = 16;

/**
 * Whether a node's answers count for `?wait=applied` and for what newcomers
 * get: authenticated with a client certificate, or (without TLS) it has ACKed
 * at least once, so a client that never ACKs cannot hold the fleet up.
 */
export function nodeCounts(node: NodeStatus): boolean {
  return node.authenticated === true || node.hasAcked;
}

/** Histogram key for a counted node that holds no snapshot in full yet. */
const NOT_SYNCED = -1;

export class NodeRegistry {
  private readonly nodes = new Map<number, NodeStatus>();
  /**
   * Counted nodes (nodeCounts) by synced revision, kept as nodes change, so
   * "are all counted nodes at revision R" costs the number of distinct
   * revisions held (a handful), not the number of nodes: `?wait=applied` asks
   * it on every ACK.
   */
  private readonly syncedHistogram = new Map<number, number>();
  /** Revision -> how many streams applied it in full / rejected part of it. */
  private readonly tallies = new Map<number, { accepted: Set<string>; rejected: Set<string> }>();
  private listeners = new Set<(streamId: number) => void>();
  /** How to end each stream when a newer stream claims its node id. */
  private readonly evictors = new Map<number, () => void>();

  /** Registers a stream's node; a live stream with the same node id is ended (see the header). */
  connect(status: Omit<NodeStatus, 'acked' | 'hasAcked'>, evict: () => void = () => {}): NodeStatus {
    for (const [streamId, other] of this.nodes) {
      if (other.nodeId !== status.nodeId) continue;
      const end = this.evictors.get(streamId);
      this.disconnect(streamId);
      end?.();
    }
    const node: NodeStatus = { ...status, acked: {}, hasAcked: false };
    this.nodes.set(status.streamId, node);
    this.evictors.set(status.streamId, evict);
    this.count(node, +1);
    this.changed(status.streamId);
    return node;
  }

  disconnect(streamId: number): void {
    const node = this.nodes.get(streamId);
    this.evictors.delete(streamId);
    if (!node) return;
    this.count(node, -1);
    this.nodes.delete(streamId);
    for (const tally of this.tallies.values()) {
      tally.accepted.delete(node.nodeId);
      tally.rejected.delete(node.nodeId);
    }
    this.changed(streamId);
  }

  /** Whether this stream's node counts (see nodeCounts); false once it is gone. */
  counts(streamId: number): boolean {
    const node = this.nodes.get(streamId);
    return node !== undefined && nodeCounts(node);
  }

  recordAck(streamId: number, type: TypeUrl, version: string): void {
    const node = this.nodes.get(streamId);
    if (!node) return;
    this.update(node, () => {
      node.acked[type] = version;
      node.hasAcked = true;
    });
  }

  /** A resumed node was found holding our config without needing a push: as good as an ACK. */
  recordConfirmed(streamId: number): void {
    const node = this.nodes.get(streamId);
    if (!node || node.hasAcked) return;
    this.update(node, () => (node.hasAcked = true));
  }

  recordSynced(streamId: number, revision: number): void {
    const node = this.nodes.get(streamId);
    if (!node || node.syncedRevision === revision) return;
    this.tally(revision).accepted.add(node.nodeId);
    this.update(node, () => {
      node.syncedRevision = revision;
      node.hasAcked = true; // holding a snapshot in full shows what an ACK shows
    });
  }

  recordNack(streamId: number, nack: NackRecord): void {
    const node = this.nodes.get(streamId);
    if (!node) return;
    node.lastNack = nack;
    this.tally(nack.revision).rejected.add(node.nodeId);
    this.changed(streamId);
  }

  /** Marks a stream as behind (or, with undefined, as keeping up again); a no-op when nothing changes. */
  recordSlow(streamId: number, mark: SlowMark | undefined): void {
    const node = this.nodes.get(streamId);
    if (!node || sameMark(node.slow, mark)) return;
    if (mark) node.slow = { ...mark, pendingTypes: [...mark.pendingTypes] };
    else delete node.slow;
    this.changed(streamId);
  }

  /** One stream's status (a copy), or undefined once it closed. */
  get(streamId: number): NodeStatus | undefined {
    const node = this.nodes.get(streamId);
    return node && structuredClone(node);
  }

  /** The node ids of the connected streams, without copying their status. */
  nodeIds(): string[] {
    return [...this.nodes.values()].map((node) => node.nodeId);
  }

  /** How many counted nodes have not synced `revision` yet (see syncedHistogram). */
  countedBehind(revision: number): number {
    let behind = 0;
    for (const [synced, nodes] of this.syncedHistogram) if (synced < revision) behind += nodes;
    return behind;
  }

  list(): NodeStatus[] {
    return [...this.nodes.values()]
      .map((node) => structuredClone(node))
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId) || a.streamId - b.streamId);
  }

  revisionTally(revision: number): RevisionTally {
    const tally = this.tallies.get(revision);
    return { accepted: tally?.accepted.size ?? 0, rejected: tally?.rejected.size ?? 0 };
  }

  /**
   * Whether a connected node that counts rejected part of `revision` (it will
   * not hold it until a later revision fixes what it refused). Cheap when
   * nobody rejected it, which is almost always.
   */
  countedRejected(revision: number): boolean {
    const rejected = this.tallies.get(revision)?.rejected;
    if (!rejected || rejected.size === 0) return false;
    for (const node of this.nodes.values()) if (rejected.has(node.nodeId) && nodeCounts(node)) return true;
    return false;
  }

  /** Calls `listener` with the stream that changed after every change; returns an unsubscribe function. */
  onChange(listener: (streamId: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private tally(revision: number) {
    let tally = this.tallies.get(revision);
    if (!tally) {
      tally = { accepted: new Set(), rejected: new Set() };
      this.tallies.set(revision, tally);
      if (this.tallies.size > TALLY_LIMIT) this.tallies.delete(Math.min(...this.tallies.keys()));
    }
    return tally;
  }

  /** Applies `mutate` to a node, keeping the histogram of counted nodes in step. */
  private update(node: NodeStatus, mutate: () => void): void {
    this.count(node, -1);
    mutate();
    this.count(node, +1);
    this.changed(node.streamId);
  }

  /** Adds (+1) or removes (-1) a node from the histogram, if it counts. */
  private count(node: NodeStatus, delta: 1 | -1): void {
    if (!nodeCounts(node)) return;
    const key = node.syncedRevision ?? NOT_SYNCED;
    const next = (this.syncedHistogram.get(key) ?? 0) + delta;
    if (next === 0) this.syncedHistogram.delete(key);
    else this.syncedHistogram.set(key, next);
  }

  private changed(streamId: number): void {
    for (const listener of this.listeners) listener(streamId);
  }
}

function sameMark(a: SlowMark | undefined, b: SlowMark | undefined): boolean {
  if (!a || !b) return a === b;
  return a.pendingSince === b.pendingSince && a.writeBacklog === b.writeBacklog && a.pendingTypes.join() === b.pendingTypes.join();
}
