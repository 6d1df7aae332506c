// Shared write plumbing: run a store commit as the calling token, remember the
// revision (for fleet status while Postgres is down), answer ?wait=applied, and
// put the revision in a header so even 204 responses carry it.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CommitResult, ConfigStore, Draft } from '../store/config-store.ts';
import type { NodeRegistry } from '../xds/registry.ts';
import { actorOf } from './auth.ts';
import { appliedField, parseWait, type RevisionTracker, type SharedFleet } from './fleet.ts';
import { ProblemError } from './problem.ts';
import { markPhase } from './timing.ts';

export interface AdminContext {
  store: ConfigStore;
  registry: NodeRegistry;
  tracker: RevisionTracker;
  /** The other replicas' nodes, so `?wait=applied` waits for the whole fleet. */
  sharedFleet?: SharedFleet;
  secret: string | undefined;
  /** Told how long each store commit took, in seconds (telemetry's commit-latency histogram). */
  commitObserved?: (seconds: number) => void;
  /** More POST /v1/routes/<name>:<action> handlers (rollouts.ts adds :rollout). */
  routeActions?: Record<string, (request: FastifyRequest, reply: FastifyReply, route: string) => Promise<unknown>>;
  /** Told after an admin commit changed routes, by name (a rollout on one of them aborts). */
  onRoutesChanged?: (routes: string[], actor: string, revision: number) => Promise<void>;
}

export const REVISION_HEADER = 'sluice-revision';

export interface WriteOutcome<T = unknown> extends CommitResult {
  applied?: boolean;
  /** What `alongside` gave, when given. */
  alongside?: T;
}

/**
 * Commits `plan`; with ?wait=applied, also waits for the fleet to sync the new
 * revision. The rollout check and `alongside` (e.g. reading back the written
 * object) run while the fleet applies the change, not before or after it: the
 * response still waits for all three, but their round trips to Postgres no
 * longer add to the write's latency.
 */
export async function commitWrite<T = undefined>(
  ctx: AdminContext,
  request: FastifyRequest,
  reply: FastifyReply,
  message: string,
  plan: (draft: Draft) => void,
  alongside?: () => Promise<T>,
): Promise<WriteOutcome<T>> {
  const wait = parseWait(request.query); // before committing: a bad ?timeout must not half-succeed
  markPhase(request, reply, 'handler');
  const started = performance.now();
  const result = await ctx.store.commit(actorOf(request), message, plan);
  ctx.commitObserved?.((performance.now() - started) / 1000);
  markPhase(request, reply, 'commit');
  ctx.tracker.note(result.revision);
  const routes = result.diff.filter((d) => d.kind === 'routes').map((d) => d.name);
  // Aborting a rollout never changes the config (the weight stays as set), so it need not precede the push.
  const rolloutsTold = result.changed && routes.length > 0 ? ctx.onRoutesChanged?.(routes, actorOf(request), result.revision) : undefined;
  const [applied, extra] = await Promise.all([appliedField(ctx.registry, result.revision, wait, ctx.sharedFleet), alongside?.(), rolloutsTold]);
  markPhase(request, reply, 'wait');
  reply.header(REVISION_HEADER, String(result.revision));
  if (applied.applied !== undefined) reply.header('sluice-applied', String(applied.applied));
  return { ...result, ...applied, ...(alongside ? { alongside: extra } : {}) };
}

/** Parses If-Match: `"<version>"` (or `*`, meaning only "must exist"). */
export function ifMatchVersion(request: FastifyRequest): number | undefined {
  const header = request.headers['if-match'];
  if (header === undefined) return undefined;
  const value = header.trim();
  if (value === '*') return undefined;
  const match = /^"(\d{1,15})"$/.exec(value);
  if (!match) throw new ProblemError(400, 'If-Match must be a single strong ETag like "3"', [{ path: 'If-Match', message: 'malformed ETag' }]);
  return Number(match[1]);
}

export function etag(version: number): string {
  return `"${version}"`;
}
