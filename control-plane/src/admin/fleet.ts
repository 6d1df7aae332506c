// Fleet status (read-only view of the xDS node registry) and `?wait=applied`.
// Only nodes that count (authenticated with a client certificate, or, without
// TLS, that ACKed at least once: see xds/registry.ts nodeCounts) are waited
// for and listed under `nodes`; the rest (a client that never ACKs) are shown
// under `unconfirmed` and can hold nobody up.
// The current revision comes from Postgres when it answers, otherwise from the
// last value seen, so status keeps working while the database is down.
//
// Several replicas act as one: with a SharedFleet (store/fleet-status.ts), the
// fleet is this replica's registry (fast, exact) plus the nodes the other
// replicas wrote to Postgres; a node id connected here is judged from here.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ConfigStore } from '../store/config-store.ts';
import type { RemoteFleetNode } from '../store/fleet-status.ts';
import type { NodeRegistry, NodeStatus } from '../xds/registry.ts';
import { ProblemError, fieldsFromIssues } from './problem.ts';
import { issuesFromZod } from '../model/index.ts';

/** How long GET /v1/fleet waits for Postgres before using the remembered revision. */
const REVISION_QUERY_TIMEOUT_MS = 1_500;
/** How many recent revisions the fleet view tallies. */
const RECENT_REVISIONS = 10;

export class RevisionTracker {
  private lastKnown: number | undefined;

  constructor(private readonly store: ConfigStore) {}

  /** Remembers a revision learned elsewhere (a commit result). */
  note(revision: number): void {
    if (this.lastKnown === undefined || revision > this.lastKnown) this.lastKnown = revision;
  }

  /** The current revision, and whether it is the remembered value rather than fresh. */
  async current(): Promise<{ revision: number | undefined; stale: boolean }> {
    try {
      const revision = await withTimeout(this.store.currentRevision(), REVISION_QUERY_TIMEOUT_MS);
      this.lastKnown = revision;
      return { revision, stale: false };
    } catch {
      return { revision: this.lastKnown, stale: true };
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The other replicas' nodes, read from Postgres (store/fleet-status.ts). */
export interface SharedFleet {
  replicaId: string;
  remote(): Promise<RemoteFleetNode[]>;
  /** How many counted remote nodes (not among `localNodeIds`) have not synced `revision`. */
  remoteBehind(revision: number, localNodeIds: string[]): Promise<number>;
}

/** How often `?wait=applied` re-reads the other replicas' nodes. */
const REMOTE_POLL_MS = 50;

export interface FleetNode {
  node_id: string;
  /** The replica the node's ADS stream is on (null without shared fleet status). */
  replica: string | null;
  stream_id: number;
  group: string;
  protocol: string;
  connected_at: string;
  acked: Record<string, string>;
  synced_revision: number | null;
  in_sync: boolean;
  authenticated: boolean;
  /** What this node last rejected (per node: other nodes still get that snapshot). */
  last_nack: NodeStatus['lastNack'] | null;
  /** The stream is behind: a push has gone unanswered longer than the server's threshold, or its writes do not drain. */
  slow: boolean;
  /** With slow: when the oldest unanswered push went out, and of which types. */
  pending_since: string | null;
  pending_types: string[];
  /** With slow: responses queued for the stream and not yet written out. */
  write_backlog: number;
}

type AnyNode = NodeStatus | RemoteFleetNode;

/** xds/registry.ts nodeCounts, for this replica's nodes and the others' alike. */
function counts(node: AnyNode): boolean {
  return node.authenticated === true || node.hasAcked;
}

function fleetNode(node: AnyNode & { replicaId?: string }, revision: number | undefined): FleetNode {
  return {
    node_id: node.nodeId,
    replica: node.replicaId ?? null,
    stream_id: node.streamId,
    group: node.group,
    protocol: node.protocol,
    connected_at: node.connectedAt,
    acked: { ...node.acked } as Record<string, string>,
    synced_revision: node.syncedRevision ?? null,
    in_sync: revision !== undefined && node.syncedRevision === revision,
    authenticated: node.authenticated === true,
    last_nack: node.lastNack ?? null,
    slow: node.slow !== undefined,
    pending_since: node.slow?.pendingSince ?? null,
    pending_types: node.slow ? [...node.slow.pendingTypes] : [],
    write_backlog: node.slow?.writeBacklog ?? 0,
  };
}

/**
 * True once every connected node that counts holds `revision` (vacuously true
 * with none). Asked on every registry change while a write waits, so it reads
 * the registry's running count instead of listing the fleet.
 */
function allApplied(registry: NodeRegistry, revision: number): boolean {
  return registry.countedBehind(revision) === 0;
}

/**
 * Resolves true when every counted node has synced `revision`, false on
 * timeout: this replica's nodes (told by the registry) and, with a shared
 * fleet, the other replicas' nodes (polled from Postgres) are waited for side
 * by side, so no Postgres round trip is left to make once the local ones ACK.
 */
export async function waitApplied(registry: NodeRegistry, revision: number, timeoutMs: number, shared?: SharedFleet): Promise<boolean> {
  if (!shared) return waitLocal(registry, revision, timeoutMs);
  const deadline = Date.now() + timeoutMs;
  const local = waitLocal(registry, revision, timeoutMs);
  const [localDone, remoteDone] = await Promise.all([local, waitRemote(registry, revision, deadline, shared, local)]);
  return localDone && remoteDone;
}

/** Polls the other replicas' nodes until none counted is behind `revision`; gives up at the deadline or when `local` failed. */
async function waitRemote(registry: NodeRegistry, revision: number, deadline: number, shared: SharedFleet, local: Promise<boolean>): Promise<boolean> {
  let localFailed = false;
  void local.then((ok) => (localFailed = !ok));
  for (;;) {
    const behind = await shared.remoteBehind(revision, registry.nodeIds()).catch(() => undefined); // Postgres away: cannot tell yet
    if (behind === 0) return true;
    const left = deadline - Date.now();
    if (left <= 0 || localFailed) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(REMOTE_POLL_MS, left)));
  }
}

/** A counted node that rejected the revision will not hold it: the answer is false now, not at the timeout. */
function waitLocal(registry: NodeRegistry, revision: number, timeoutMs: number): Promise<boolean> {
  if (allApplied(registry, revision)) return Promise.resolve(true);
  if (registry.countedRejected(revision)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const finish = (applied: boolean) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(applied);
    };
    const unsubscribe = registry.onChange(() => {
      if (allApplied(registry, revision)) finish(true);
      else if (registry.countedRejected(revision)) finish(false);
    });
    const timer = setTimeout(() => finish(false), timeoutMs);
  });
}

/** `?wait=applied&timeout=<ms>` on write requests. */
const WaitQuerySchema = z.looseObject({
  wait: z.literal('applied').optional(),
  timeout: z.coerce.number().int().min(0).max(300_000).default(10_000),
});

export interface WaitOptions {
  wait: boolean;
  timeoutMs: number;
}

export function parseWait(query: unknown): WaitOptions {
  const parsed = WaitQuerySchema.safeParse(query ?? {});
  if (!parsed.success) throw new ProblemError(400, 'invalid query parameters', fieldsFromIssues(issuesFromZod(parsed.error)));
  return { wait: parsed.data.wait === 'applied', timeoutMs: parsed.data.timeout };
}

/** Adds `applied` to a write response when the caller asked to wait. */
export async function appliedField(registry: NodeRegistry, revision: number, wait: WaitOptions, shared?: SharedFleet): Promise<{ applied?: boolean }> {
  if (!wait.wait) return {};
  return { applied: await waitApplied(registry, revision, wait.timeoutMs, shared) };
}

/**
 * This replica's nodes plus the other replicas' (one row per node id: a local
 * stream wins, else the newest); `remoteUnavailable` when Postgres did not answer.
 */
async function wholeFleet(registry: NodeRegistry, shared: SharedFleet | undefined): Promise<{ nodes: AnyNode[]; remoteUnavailable: boolean }> {
  const local: AnyNode[] = registry.list().map((node) => (shared ? { ...node, replicaId: shared.replicaId } : node));
  if (!shared) return { nodes: local, remoteUnavailable: false };
  const remote = await withTimeout(shared.remote(), REVISION_QUERY_TIMEOUT_MS).catch(() => undefined);
  if (!remote) return { nodes: local, remoteUnavailable: true };
  const seen = new Set(local.map((node) => node.nodeId));
  const others = remote.filter((node) => !seen.has(node.nodeId) && (seen.add(node.nodeId), true)); // remote() lists the newest first
  const nodes = [...local, ...others].sort((a, b) => a.nodeId.localeCompare(b.nodeId) || a.streamId - b.streamId);
  return { nodes, remoteUnavailable: false };
}

/** Accept/reject counts for `revision`: this replica's tally plus what the other replicas' nodes show. */
function tallyFor(registry: NodeRegistry, revision: number, nodes: AnyNode[], shared: SharedFleet | undefined): { accepted: number; rejected: number } {
  const tally = registry.revisionTally(revision);
  const remote = nodes.filter((node) => shared !== undefined && 'replicaId' in node && node.replicaId !== shared.replicaId);
  return {
    accepted: tally.accepted + remote.filter((node) => node.syncedRevision === revision).length,
    rejected: tally.rejected + remote.filter((node) => node.lastNack?.revision === revision).length,
  };
}

export function registerFleet(app: FastifyInstance, registry: NodeRegistry, tracker: RevisionTracker, shared?: SharedFleet): void {
  app.get('/v1/fleet', async () => {
    const [{ revision, stale }, { nodes: listed, remoteUnavailable }] = await Promise.all([tracker.current(), wholeFleet(registry, shared)]);
    const nodes = listed.filter(counts).map((node) => fleetNode(node, revision));
    const unconfirmed = listed.filter((node) => !counts(node)).map((node) => fleetNode(node, revision));
    const recent: { revision: number; accepted: number; rejected: number }[] = [];
    if (revision !== undefined) {
      for (let r = revision; r > Math.max(0, revision - RECENT_REVISIONS); r--) recent.push({ revision: r, ...tallyFor(registry, r, listed, shared) });
    }
    return {
      revision: revision ?? null,
      revision_stale: stale,
      // The other replicas' nodes could not be read (Postgres away): only this replica's are listed.
      remote_unavailable: remoteUnavailable,
      nodes,
      unconfirmed,
      in_sync: nodes.filter((n) => n.in_sync).length,
      total: nodes.length,
      revisions: recent,
    };
  });
}
