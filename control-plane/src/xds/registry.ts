// Who is connected, what each Envoy has applied, and what it rejected. Read by
// the admin API's fleet status; written only by the ADS server.
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
  /** Per type, the version_info of the last response this node ACKed. */
  acked: Partial<Record<TypeUrl, string>>;
  /** The newest snapshot revision this node holds in full. */
  syncedRevision?: number;
  lastNack?: NackRecord;
}

export interface RevisionTally {
  accepted: number;
  rejected: number;
}

/** Revisions whose accept/reject counts are kept (older ones are dropped). */
const TALLY_LIMIT = 200;

export class NodeRegistry {
  private readonly nodes = new Map<number, NodeStatus>();
  /** Revision -> how many streams applied it in full / rejected part of it. */
  private readonly tallies = new Map<number, { accepted: Set<string>; rejected: Set<string> }>();
  private listeners = new Set<() => void>();

  connect(status: Omit<NodeStatus, 'acked'>): NodeStatus {
    const node: NodeStatus = { ...status, acked: {} };
    this.nodes.set(status.streamId, node);
    this.changed();
    return node;
  }

  disconnect(streamId: number): void {
    this.nodes.delete(streamId);
    this.changed();
  }

  recordAck(streamId: number, type: TypeUrl, version: string): void {
    const node = this.nodes.get(streamId);
    if (!node) return;
    node.acked[type] = version;
    this.changed();
  }

  recordSynced(streamId: number, revision: number): void {
    const node = this.nodes.get(streamId);
    if (!node || node.syncedRevision === revision) return;
    node.syncedRevision = revision;
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
