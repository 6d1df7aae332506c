// Snapshot cache, keyed by node group (Envoy's node.cluster). Holds, per group,
// the newest snapshot and the last one an Envoy accepted in full, so that a
// snapshot any Envoy rejected is never handed out again (last-known-good).
import { EventEmitter } from 'node:events';
import { setVersion, type ResourceSet } from './resources.ts';
import type { Snapshot } from './snapshot.ts';

/** How many sent resource sets a group remembers for resuming SotW clients. */
const HISTORY_LIMIT = 256;

interface GroupEntry {
  current?: Snapshot;
  lastAccepted?: Snapshot;
  rejected: Set<string>;
  /** Sets recently sent, by set version (insertion-ordered, oldest first). */
  history: Map<string, ResourceSet>;
}

export interface SnapshotCacheEvents {
  updated: [group: string];
}

export class SnapshotCache extends EventEmitter<SnapshotCacheEvents> {
  private readonly groups = new Map<string, GroupEntry>();
  /** Snapshot for groups that have none of their own (the default fleet config). */
  static readonly DEFAULT_GROUP = '*';

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  /** Sets the group's desired config; streams of that group are told to push the difference. */
  setSnapshot(group: string, snapshot: Snapshot): void {
    const entry = this.entry(group);
    if (entry.current?.version === snapshot.version) {
      entry.current = snapshot; // same content, newer revision label
      return;
    }
    entry.current = snapshot;
    this.emit('updated', group);
  }

  /** What a stream of this group should converge to: the newest snapshot unless it was rejected. */
  servable(group: string): Snapshot | undefined {
    const entry = this.groups.get(group) ?? this.groups.get(SnapshotCache.DEFAULT_GROUP);
    if (!entry?.current) return undefined;
    if (!entry.rejected.has(entry.current.version)) return entry.current;
    return entry.lastAccepted;
  }

  current(group: string): Snapshot | undefined {
    return (this.groups.get(group) ?? this.groups.get(SnapshotCache.DEFAULT_GROUP))?.current;
  }

  lastAccepted(group: string): Snapshot | undefined {
    return (this.groups.get(group) ?? this.groups.get(SnapshotCache.DEFAULT_GROUP))?.lastAccepted;
  }

  /** An Envoy of this group applied every type of the snapshot. */
  markAccepted(group: string, snapshot: Snapshot): void {
    const entry = this.entryFor(group);
    if (!entry || entry.rejected.has(snapshot.version)) return;
    if (entry.lastAccepted && entry.lastAccepted.revision > snapshot.revision) return;
    entry.lastAccepted = snapshot;
  }

  /** An Envoy of this group NACKed part of the snapshot: stop handing it out. */
  markRejected(group: string, snapshot: Snapshot): void {
    const entry = this.entryFor(group);
    if (!entry || entry.rejected.has(snapshot.version)) return;
    entry.rejected.add(snapshot.version);
    if (entry.lastAccepted?.version === snapshot.version) entry.lastAccepted = undefined;
    this.emit('updated', this.groups.has(group) ? group : SnapshotCache.DEFAULT_GROUP);
  }

  /**
   * Remembers a set a stream sent, so a state-of-the-world client that
   * reconnects reporting its version can be resumed from what it holds (it
   * does not name its resources; without this, make-before-break would have
   * to guess).
   */
  remember(group: string, set: ResourceSet): void {
    const entry = this.entryFor(group);
    if (!entry) return;
    const version = setVersion(set);
    entry.history.delete(version);
    entry.history.set(version, set);
    if (entry.history.size > HISTORY_LIMIT) entry.history.delete(entry.history.keys().next().value!);
  }

  recall(group: string, version: string): ResourceSet | undefined {
    return this.entryFor(group)?.history.get(version);
  }

  private entryFor(group: string): GroupEntry | undefined {
    return this.groups.get(group) ?? this.groups.get(SnapshotCache.DEFAULT_GROUP);
  }

  private entry(group: string): GroupEntry {
    let entry = this.groups.get(group);
    if (!entry) {
      entry = { rejected: new Set(), history: new Map() };
      this.groups.set(group, entry);
    }
    return entry;
  }
}
