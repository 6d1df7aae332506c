// Snapshot cache, keyed by node group (Envoy's node.cluster), and the rule that
// decides which snapshot each connected node (stream) converges to.
//
// The rule (DESIGN.md: one node's NACK never withholds config from the others):
//   1. What a node rejected is recorded per node (this cache, per stream id, and
//      the registry's lastNack shown in /v1/fleet), never as a property of the
//      content for the life of the process. A node's verdicts are forgotten
//      when its stream closes.
//   2. Every connected node follows the newest snapshot of its group. A NACK
//      moves only the node that sent it: it is never re-sent what it rejected
//      (no NACK loop); it falls back to the newest snapshot it did not reject
//      that no counted node rejected, else the newest one some node accepted,
//      else it holds what it has. Publishing new content (even content equal
//      to something rejected earlier: a revert) moves every node to it again.
//   3. A node that connects gets the newest snapshot that no counted node has
//      rejected (among the newest one and those some node accepted), else the
//      newest one some node accepted, else the newest one: never nothing once
//      a snapshot exists.
//   4. A node counts once it is authenticated (xDS with client certificates)
//      or, without TLS, once it has ACKed at least once. Only rejections by
//      connected, counted nodes steer newcomers, so a client that NACKs and
//      disconnects, or never ACKs anything, changes nothing for anyone else.
//      (Without TLS a client that behaves like an Envoy, ACKs included, can't
//      be told from one; TLS is the defence against that.)
//   5. Publishing content equal to the newest snapshot's only relabels it with
//      the new revision: nodes holding it are in sync with that revision at
//      once, and nothing is re-sent to a node that rejected it.
import { EventEmitter } from 'node:events';
import { setVersion, type ResourceSet } from './resources.ts';
import type { Snapshot } from './snapshot.ts';

/** How many sent resource sets a group remembers for resuming SotW clients. */
const HISTORY_LIMIT = 256;
/**
 * And how many bytes of resources they may hold, beyond the newest few: at
 * 10,000 routes each route table sent is ~3 MB, so 256 of them would be most of
 * the process. A client older than what is kept is served as a new one.
 */
const HISTORY_BYTES = 32 * 1024 * 1024;
const HISTORY_ALWAYS = 8;
/** How many distinct snapshots a group keeps verdicts for (older ones can no longer be fallen back to). */
const GENERATION_LIMIT = 32;
/** And their resources' bytes, beyond the newest few (a 10,000-route table is ~3 MB per snapshot). */
const GENERATION_BYTES = 64 * 1024 * 1024;
const GENERATION_ALWAYS = 8;

/** One published content of a group, with the verdicts of connected nodes on it. */
interface Generation {
  snapshot: Snapshot;
  /** Its resources' bytes (shared ones counted in each: an upper bound). */
  bytes: number;
  /** Stream ids of connected nodes that NACKed part of it. */
  rejectedBy: Set<number>;
  /** Some node held it in full at some point. */
  accepted: boolean;
}

interface GroupEntry {
  /** Oldest first; the last one is the group's newest snapshot. */
  generations: Generation[];
  /** Sets recently sent, by set version (insertion-ordered, oldest first), with their resources' bytes. */
  history: Map<string, { set: ResourceSet; bytes: number }>;
  historyBytes: number;
}

/** Where a node converges to: the group's newest snapshot, a pinned older one, or nothing new. */
type Target = { kind: 'newest' } | { kind: 'pinned'; generation: Generation } | { kind: 'hold' };

interface Member {
  group: string;
  counts: boolean;
  target: Target;
}

export interface SnapshotCacheEvents {
  /** The group's newest snapshot changed or was relabelled with a newer revision. */
  updated: [group: string];
}

function snapshotBytes(snapshot: Snapshot): number {
  let bytes = 0;
  for (const set of snapshot.types.values()) for (const resource of set.values()) bytes += resource.value.length;
  return bytes;
}

/** The last element of `list` (the newest) that satisfies `predicate`. */
function newestWhere<T>(list: readonly T[] | undefined, predicate: (item: T) => boolean): T | undefined {
  for (let i = (list?.length ?? 0) - 1; i >= 0; i--) if (predicate(list![i]!)) return list![i];
  return undefined;
}

export class SnapshotCache extends EventEmitter<SnapshotCacheEvents> {
  private readonly groups = new Map<string, GroupEntry>();
  private readonly members = new Map<number, Member>();
  private readonly generationOf = new WeakMap<Snapshot, Generation>();
  /** Snapshot for groups that have none of their own (the default fleet config). */
  static readonly DEFAULT_GROUP = '*';

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  /** Sets the group's desired config; streams of that group are told to push the difference. */
  setSnapshot(group: string, snapshot: Snapshot): void {
    const entry = this.entry(group);
    const newest = entry.generations.at(-1);
    if (newest?.snapshot.version === snapshot.version) {
      // Same content, newer revision label (rule 5): nobody is moved or unpinned.
      newest.snapshot = snapshot;
      this.generationOf.set(snapshot, newest);
    } else {
      const generation: Generation = { snapshot, bytes: snapshotBytes(snapshot), rejectedBy: new Set(), accepted: false };
      this.generationOf.set(snapshot, generation);
      entry.generations.push(generation);
      let bytes = entry.generations.reduce((sum, g) => sum + g.bytes, 0);
      while (entry.generations.length > GENERATION_LIMIT || (bytes > GENERATION_BYTES && entry.generations.length > GENERATION_ALWAYS)) {
        bytes -= entry.generations.shift()!.bytes;
      }
      for (const member of this.members.values()) {
        if (this.entryFor(member.group) === entry) member.target = { kind: 'newest' };
      }
    }
    this.emit('updated', group);
  }

  /** What a node connecting to this group now would get (rule 3). */
  servable(group: string): Snapshot | undefined {
    const entry = this.entryFor(group);
    return entry ? this.targetSnapshot(entry, this.newcomerTarget(entry)) : undefined;
  }

  /** What this stream should converge to now. */
  servableFor(streamId: number): Snapshot | undefined {
    const member = this.members.get(streamId);
    if (!member) return undefined;
    const entry = this.entryFor(member.group);
    return entry ? this.targetSnapshot(entry, member.target) : undefined;
  }

  current(group: string): Snapshot | undefined {
    return this.entryFor(group)?.generations.at(-1)?.snapshot;
  }

  /** The newest snapshot some node of the group held in full. */
  lastAccepted(group: string): Snapshot | undefined {
    return newestWhere(this.entryFor(group)?.generations, (g) => g.accepted)?.snapshot;
  }

  /** A stream identified its node: it follows what a newcomer gets. */
  join(streamId: number, group: string, counts = false): void {
    const member: Member = { group, counts, target: { kind: 'newest' } };
    const entry = this.entryFor(group);
    if (entry) member.target = this.newcomerTarget(entry);
    this.members.set(streamId, member);
  }

  /** The node proved itself (authenticated, or ACKed once): its rejections now steer newcomers. */
  trust(streamId: number): void {
    const member = this.members.get(streamId);
    if (member) member.counts = true;
  }

  /** The stream closed: forget its verdicts (rule 1). */
  leave(streamId: number): void {
    if (!this.members.delete(streamId)) return;
    for (const entry of this.groups.values()) {
      for (const generation of entry.generations) generation.rejectedBy.delete(streamId);
    }
  }

  /** The node of this stream applied every type of `snapshot`. */
  markAccepted(streamId: number, snapshot: Snapshot): void {
    const generation = this.generationOf.get(snapshot);
    if (generation && this.members.has(streamId)) generation.accepted = true;
  }

  /** The node of this stream NACKed part of `snapshot`: it alone moves off it (rule 2). */
  markRejected(streamId: number, snapshot: Snapshot): void {
    const member = this.members.get(streamId);
    const generation = this.generationOf.get(snapshot);
    if (!member || !generation) return;
    generation.rejectedBy.add(streamId);
    const entry = this.entryFor(member.group);
    if (!entry || this.targetGeneration(entry, member.target) !== generation) return;
    member.target = this.fallback(entry, streamId);
  }

  /** The stream ids whose nodes rejected the group's newest snapshot (for tests and status). */
  rejectersOfNewest(group: string): number[] {
    return [...(this.entryFor(group)?.generations.at(-1)?.rejectedBy ?? [])];
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
    this.forget(entry, version);
    let bytes = 0;
    for (const resource of set.values()) bytes += resource.value.length;
    entry.history.set(version, { set, bytes });
    entry.historyBytes += bytes;
    while (entry.history.size > HISTORY_LIMIT || (entry.historyBytes > HISTORY_BYTES && entry.history.size > HISTORY_ALWAYS)) {
      this.forget(entry, entry.history.keys().next().value!);
    }
  }

  recall(group: string, version: string): ResourceSet | undefined {
    return this.entryFor(group)?.history.get(version)?.set;
  }

  private forget(entry: GroupEntry, version: string): void {
    const held = entry.history.get(version);
    if (!held) return;
    entry.history.delete(version);
    entry.historyBytes -= held.bytes;
  }

  /** Rule 3: newest candidate no counted node rejected, else newest accepted, else newest. */
  private newcomerTarget(entry: GroupEntry): Target {
    const newest = entry.generations.at(-1);
    const candidates = entry.generations.filter((g) => g === newest || g.accepted);
    const clean = newestWhere(candidates, (g) => !this.rejectedByCounted(g));
    const chosen = clean ?? newestWhere(entry.generations, (g) => g.accepted) ?? newest;
    return !chosen || chosen === newest ? { kind: 'newest' } : { kind: 'pinned', generation: chosen };
  }

  /** Rule 2: where a node goes after rejecting its target. */
  private fallback(entry: GroupEntry, streamId: number): Target {
    const newest = entry.generations.at(-1);
    const own = entry.generations.filter((g) => !g.rejectedBy.has(streamId) && (g === newest || g.accepted));
    const chosen = newestWhere(own, (g) => !this.rejectedByCounted(g)) ?? newestWhere(own, (g) => g.accepted);
    if (!chosen) return { kind: 'hold' };
    return chosen === newest ? { kind: 'newest' } : { kind: 'pinned', generation: chosen };
  }

  private rejectedByCounted(generation: Generation): boolean {
    for (const id of generation.rejectedBy) if (this.members.get(id)?.counts) return true;
    return false;
  }

  private targetGeneration(entry: GroupEntry, target: Target): Generation | undefined {
    if (target.kind === 'hold') return undefined;
    return target.kind === 'pinned' ? target.generation : entry.generations.at(-1);
  }

  private targetSnapshot(entry: GroupEntry, target: Target): Snapshot | undefined {
    return this.targetGeneration(entry, target)?.snapshot;
  }

  private entryFor(group: string): GroupEntry | undefined {
    return this.groups.get(group) ?? this.groups.get(SnapshotCache.DEFAULT_GROUP);
  }

  private entry(group: string): GroupEntry {
    let entry = this.groups.get(group);
    if (!entry) {
      entry = { generations: [], history: new Map(), historyBytes: 0 };
      this.groups.set(group, entry);
    }
    return entry;
  }
}
