// Fleet status (read-only view of the xDS node registry) and `?wait=applied`.
// Only nodes that count (authenticated with a client certificate, or, without
// TLS, that ACKed at least once: see xds/registry.ts nodeCounts) are waited
// for and listed under `nodes`; the rest (a client that never ACKs) are shown
// under `unconfirmed` and can hold nobody up.
// The current revision comes from Postgres when it answers, otherwise from the
// last value seen, so status keeps working while the database is down.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ConfigStore } from '../store/config-store.ts';
import { nodeCounts, type NodeRegistry, type NodeStatus } from '../xds/registry.ts';
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

export interface FleetNode {
  node_id: string;
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
}

function fleetNode(node: NodeStatus, revision: number | undefined): FleetNode {
  return {
    node_id: node.nodeId,
    stream_id: node.streamId,
    group: node.group,
    protocol: node.protocol,
    connected_at: node.connectedAt,
    acked: { ...node.acked } as Record<string, string>,
    synced_revision: node.syncedRevision ?? null,
    in_sync: revision !== undefined && node.syncedRevision === revision,
    authenticated: node.authenticated === true,
    last_nack: node.lastNack ?? null,
  };
}

/** True once every connected node that counts holds `revision` (vacuously true with none). */
function allApplied(registry: NodeRegistry, revision: number): boolean {
  return registry.list().filter(nodeCounts).every((node) => (node.syncedRevision ?? -1) >= revision);
}

/** Resolves true when every counted node has synced `revision`, false on timeout. */
export function waitApplied(registry: NodeRegistry, revision: number, timeoutMs: number): Promise<boolean> {
  if (allApplied(registry, revision)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (applied: boolean) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(applied);
    };
    const unsubscribe = registry.onChange(() => {
      if (allApplied(registry, revision)) finish(true);
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
export async function appliedField(registry: NodeRegistry, revision: number, wait: WaitOptions): Promise<{ applied?: boolean }> {
  if (!wait.wait) return {};
  return { applied: await waitApplied(registry, revision, wait.timeoutMs) };
}

export function registerFleet(app: FastifyInstance, registry: NodeRegistry, tracker: RevisionTracker): void {
  app.get('/v1/fleet', async () => {
    const { revision, stale } = await tracker.current();
    const listed = registry.list();
    const nodes = listed.filter(nodeCounts).map((node) => fleetNode(node, revision));
    const unconfirmed = listed.filter((node) => !nodeCounts(node)).map((node) => fleetNode(node, revision));
    const recent: { revision: number; accepted: number; rejected: number }[] = [];
    if (revision !== undefined) {
      for (let r = revision; r > Math.max(0, revision - RECENT_REVISIONS); r--) recent.push({ revision: r, ...registry.revisionTally(r) });
    }
    return {
      revision: revision ?? null,
      revision_stale: stale,
      nodes,
      unconfirmed,
      in_sync: nodes.filter((n) => n.in_sync).length,
      total: nodes.length,
      revisions: recent,
    };
  });
}
