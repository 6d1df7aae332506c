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

export class NodeRegistry {
  private readonly nodes = new Map<number, NodeStatus>();
  /** Revision -> how many streams applied it in full / rejected part of it. */
  private readonly tallies = new Map<number, { accepted: Set<string>; rejected: Set<string> }>();
  private listeners = new Set<() => void>();
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
    this.changed();
    return node;
  }

  disconnect(streamId: number): void {
    const node = this.nodes.get(streamId);
    this.evictors.delete(streamId);
    if (!node) return;
    this.nodes.delete(streamId);
    for (const tally of this.tallies.values()) {
      tally.accepted.delete(node.nodeId);
      tally.rejected.delete(node.nodeId);
    }
    this.changed();
  }

  /** Whether this stream's node counts (see nodeCounts); false once it is gone. */
  counts(streamId: number): boolean {
    const node = this.nodes.get(streamId);
    return node !== undefined && nodeCounts(node);
  }

  recordAck(streamId: number, type: TypeUrl, version: string): void {
    const node = this.nodes.get(streamId);
    if (!node) return;
    node.acked[type] = version;
    node.hasAcked = true;
    this.changed();
  }

  /** A resumed node was found holding our config without needing a push: as good as an ACK. */
  recordConfirmed(streamId: number): void {
    const node = this.nodes.get(streamId);
    if (!node || node.hasAcked) return;
    node.hasAcked = true;
    this.changed();
  }

  recordSynced(streamId: number, revision: number): void {
    const node = this.nodes.get(streamId);
    if (!node || node.syncedRevision === revision) return;
    node.syncedRevision = revision;
    node.hasAcked = true; // holding a snapshot in full shows what an ACK shows
    this.tally(revision).accepted.add(node.nodeId);
    this.changed();
  }

  recordNack(streamId: number, nack: NackRecord): void {
    const node = this.nodes.get(streamId);
    if (!node) return;
    node.lastNack = nack;
    this.tally(nack.revision).rejected.add(node.nodeId);
    this.changed();
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

  /** Calls `listener` after every change; returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
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

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
