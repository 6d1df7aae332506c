// Revision history and rollback. A rollback is a new revision whose config is
// exactly revision n's, never a rewrite of history. It restores config, not key
// material: an API key deleted or replaced since n stays revoked (the store
// withholds it; the response lists those credentials in keys_not_restored).
// Revisions past retention are pruned (store/revision-history.ts): asking for
// one is 410 Gone, never a partial restore; one that never existed is 404.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { RevisionSummary } from '../store/config-store.ts';
import { type AdminContext, commitWrite } from './commit.ts';
import { changeList } from './config.ts';
import { clip, ProblemError } from './problem.ts';
import { actionTarget, parseOrThrow } from './resources.ts';

const ListQuerySchema = z.looseObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: z.coerce.number().int().min(1).optional(),
});

const RevisionNumberSchema = z.string().regex(/^[1-9]\d{0,14}$/).transform(Number);

function summary(r: RevisionSummary) {
  return { revision: r.revision, created_at: r.createdAt.toISOString(), author: r.author, message: r.message };
}

function revisionNumber(raw: string): number {
  const parsed = RevisionNumberSchema.safeParse(raw);
  // Not a revision number at all: a malformed parameter, not a missing revision.
  if (!parsed.success) throw new ProblemError(400, `'${clip(raw, 40)}' is not a revision number`, [{ path: 'revision', message: 'must be a positive integer' }]);
  return parsed.data;
}

/** 410 when `n` is older than every stored revision (pruned), else 404. */
async function missingRevision(ctx: AdminContext, n: number): Promise<ProblemError> {
  const oldest = await ctx.store.oldestRevision();
  if (oldest > 0 && n < oldest) {
    return new ProblemError(410, `revision ${n} is past retention and was pruned; the oldest kept is ${oldest}`, [{ path: 'revision', message: `must be ${oldest} or newer` }]);
  }
  return new ProblemError(404, `revision ${n} not found`);
}

export function registerRevisions(app: FastifyInstance, ctx: AdminContext): void {
  app.get('/v1/revisions', async (request) => {
    const query = parseOrThrow(ListQuerySchema, request.query, 400, 'invalid query parameters');
    const rows = await ctx.store.listRevisions(query.limit + 1, query.before);
    const page = rows.slice(0, query.limit);
    const next = rows.length > query.limit ? (page.at(-1)?.revision ?? null) : null;
    return { items: page.map(summary), next };
  });

  app.get<{ Params: { n: string } }>('/v1/revisions/:n', async (request) => {
    const n = revisionNumber(request.params.n);
    const [row] = await ctx.store.listRevisions(1, n + 1);
    if (!row || row.revision !== n) throw await missingRevision(ctx, n);
    const changes = await ctx.store.revisionDiff(n);
    return { ...summary(row), changes };
  });

  // Fastify cannot route ':n' followed by a literal ':rollback'; see actionTarget.
  app.post<{ Params: { target: string } }>('/v1/revisions/:target', async (request, reply) => {
    const n = revisionNumber(actionTarget(request.params.target, 'rollback'));
    const snapshot = await ctx.store.revisionSnapshot(n);
    if (!snapshot) throw await missingRevision(ctx, n);
    const outcome = await commitWrite(ctx, request, reply, `rollback to revision ${n}`, (draft) =>
      draft.replaceAll(snapshot.config, snapshot.credential_keys),
    );
    return {
      revision: outcome.revision,
      changed: outcome.changed,
      restored: n,
      changes: changeList(outcome.diff),
      // Revoked API keys are never restored: these credentials came back without a key (issue a new one).
      ...(outcome.keysWithheld.length === 0 ? {} : { keys_not_restored: outcome.keysWithheld }),
      ...(outcome.applied === undefined ? {} : { applied: outcome.applied }),
    };
  });
}
