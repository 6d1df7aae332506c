// Shared write plumbing: run a store commit as the calling token, remember the
// revision (for fleet status while Postgres is down), answer ?wait=applied, and
// put the revision in a header so even 204 responses carry it.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CommitResult, ConfigStore, Draft } from '../store/config-store.ts';
import type { NodeRegistry } from '../xds/registry.ts';
import { actorOf } from './auth.ts';
import { appliedField, parseWait, type RevisionTracker } from './fleet.ts';
import { ProblemError } from './problem.ts';

export interface AdminContext {
  store: ConfigStore;
  registry: NodeRegistry;
  tracker: RevisionTracker;
  secret: string | undefined;
}

export const REVISION_HEADER = 'sluice-revision';

export interface WriteOutcome extends CommitResult {
  applied?: boolean;
}

/** Commits `plan`; with ?wait=applied, also waits for the fleet to sync the new revision. */
export async function commitWrite(
  ctx: AdminContext,
  request: FastifyRequest,
  reply: FastifyReply,
  message: string,
  plan: (draft: Draft) => void,
): Promise<WriteOutcome> {
  const wait = parseWait(request.query); // before committing: a bad ?timeout must not half-succeed
  const result = await ctx.store.commit(actorOf(request), message, plan);
  ctx.tracker.note(result.revision);
  const applied = await appliedField(ctx.registry, result.revision, wait);
  reply.header(REVISION_HEADER, String(result.revision));
  if (applied.applied !== undefined) reply.header('sluice-applied', String(applied.applied));
  return { ...result, ...applied };
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
