// The whole config at once: validate, diff (a dry run of exactly what PUT would
// do) and declarative apply (all-or-nothing; applying the same file twice makes
// no new revision). Bodies may be JSON or YAML (see app.ts for the parsers).
//
// Error paths here are relative to the file: 'routes.0.action.upstream', with
// the index as written in the file.
import type { FastifyInstance } from 'fastify';
import { KINDS, parseDeclarativeConfig, type DeclarativeConfig } from '../model/index.ts';
import type { DiffEntry } from '../store/config-store.ts';
import { deepFreeze } from '../store/frozen.ts';
import { actorOf } from './auth.ts';
import { type AdminContext, commitWrite } from './commit.ts';
import { fieldsFromIssues, ProblemError } from './problem.ts';

/**
 * The body as the model's schema gives it, checked whole (schema and
 * cross-object rules: the store relies on both). Its objects are frozen before
 * the cross-object check: the store freezes what it commits anyway, and keys
 * the check works out for frozen routes are cached rather than built again by
 * the commit (10,000 routes: ~10 ms).
 */
function parseConfig(body: unknown): DeclarativeConfig {
  const parsed = parseDeclarativeConfig(body ?? {}, { beforeCrossCheck: freezeObjects });
  if (!parsed.ok) throw new ProblemError(422, 'invalid config', fieldsFromIssues(parsed.issues));
  return parsed.value;
}

/** Freezes each object of `config` (not its lists: a plan may still build on them). */
function freezeObjects(config: DeclarativeConfig): void {
  for (const kind of KINDS) for (const object of config[kind]) deepFreeze(object);
}

export function changeList(diff: readonly DiffEntry[]) {
  return diff.map(({ op, kind, name }) => ({ op, kind, name }));
}

/**
 * A whole config is far larger than one object: 10,000 routes of a few hundred
 * bytes each are several MiB. Object endpoints keep the app's 1 MiB limit.
 */
export const DEFAULT_CONFIG_BODY_LIMIT = 32 * 1024 * 1024;

export function registerConfig(app: FastifyInstance, ctx: AdminContext, bodyLimit = DEFAULT_CONFIG_BODY_LIMIT): void {
  // '::' is fastify's escape for a literal ':' in a path.
  app.post('/v1/config::validate', { bodyLimit }, async (request) => {
    parseConfig(request.body);
    return { valid: true };
  });

  app.post('/v1/config::diff', { bodyLimit }, async (request) => {
    const config = parseConfig(request.body);
    const result = await ctx.store.commit(actorOf(request), 'diff (dry run)', (draft) => draft.replaceAll(config, undefined, { parsed: true, validated: true }), { dryRun: true });
    return { revision: result.revision, changes: changeList(result.diff) };
  });

  app.put('/v1/config', { bodyLimit }, async (request, reply) => {
    const config = parseConfig(request.body);
    const outcome = await commitWrite(ctx, request, reply, 'declarative apply', (draft) => draft.replaceAll(config, undefined, { parsed: true, validated: true }));
    return {
      revision: outcome.revision,
      changed: outcome.changed,
      changes: changeList(outcome.diff),
      ...(outcome.applied === undefined ? {} : { applied: outcome.applied }),
    };
  });

  app.get('/v1/config', async () => {
    const { state } = await ctx.store.loadState();
    const { revision, ...config } = state;
    return { revision, config };
  });
}
