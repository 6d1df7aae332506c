// CRUD for every object kind under /v1/<kind>: list (paged by name), get (ETag),
// create, replace, merge-patch, delete, plus the route canary action. Bodies are
// the object spec itself, validated strictly by the model schema; responses wrap
// the spec with its version and metadata so a GET body's `spec` can be PUT back.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { issuesFromZod, NameSchema, RouteSchema, type Issue, type Kind, type Route } from '../model/index.ts';
import { generateApiKey } from '../store/api-keys.ts';
import { StoreError, type Draft, type ObjectSpec, type StoredObject } from '../store/config-store.ts';
import { type AdminContext, commitWrite, etag, ifMatchVersion, type WriteOutcome } from './commit.ts';
import { KIND_INFO, type KindInfo } from './kinds.ts';
import { clip, fieldsFromIssues, ProblemError } from './problem.ts';

export const MAX_PAGE = 500;

// Names are lowercase DNS labels, so a cursor or prefix outside that alphabet
// can match nothing: refuse it rather than send it to Postgres.
const NamePartSchema = z.string().max(63).regex(/^[a-z0-9-]*$/, 'must be lowercase letters, digits and -');
const ListQuerySchema = z.looseObject({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(50),
  after: NamePartSchema.optional(),
  prefix: NamePartSchema.optional(),
});

type Params = { name: string };

export function registerResources(app: FastifyInstance, ctx: AdminContext): void {
  for (const info of KIND_INFO) registerKind(app, ctx, info);
  registerCanary(app, ctx);
}

function registerKind(app: FastifyInstance, ctx: AdminContext, info: KindInfo): void {
  const base = `/v1/${info.segment}`;
  const { kind } = info;

  app.get(base, async (request) => {
    const query = parseOrThrow(ListQuerySchema, request.query, 400, 'invalid query parameters');
    const rows = await ctx.store.list(kind, { limit: query.limit + 1, after: query.after, prefix: query.prefix });
    const page = rows.slice(0, query.limit);
    const next = rows.length > query.limit ? (page.at(-1)?.name ?? null) : null;
    return { items: page.map(representation), next };
  });

  app.get<{ Params: Params }>(`${base}/:name`, async (request, reply) => {
    const stored = await mustGet(ctx, kind, nameParam(request.params.name));
    return reply.header('etag', etag(stored.version)).send(representation(stored));
  });

  app.post(base, async (request, reply) => {
    const spec = parseSpec(info, request.body);
    let key: string | undefined;
    const outcome = await commitObject(ctx, request, reply, `create ${kind}/${spec.name}`, { kind, name: spec.name }, (draft) => {
      key = createObject(ctx, draft, kind, spec);
    });
    // The API key appears in this one response and nowhere else.
    return respondWithObject(ctx, reply.code(201).header('location', `${base}/${spec.name}`), kind, spec.name, outcome, key ? { key } : {});
  });

  app.put<{ Params: Params }>(`${base}/:name`, async (request, reply) => {
    const name = nameParam(request.params.name);
    const spec = parseSpec(info, withDefaultName(request.body, name));
    const ifVersion = ifMatchVersion(request);
    const outcome = await commitObject(ctx, request, reply, `replace ${kind}/${name}`, { kind, name }, (draft) =>
      draft.replace(kind, name, spec, ifVersion),
    );
    return respondWithObject(ctx, reply, kind, name, outcome);
  });

  app.patch<{ Params: Params }>(`${base}/:name`, async (request, reply) => {
    const name = nameParam(request.params.name);
    if (!isPlainObject(request.body)) throw new ProblemError(400, 'a merge patch must be a JSON object', [{ path: '', message: 'expected an object' }]);
    const patch = request.body;
    const ifVersion = ifMatchVersion(request);
    const outcome = await commitObject(ctx, request, reply, `patch ${kind}/${name}`, { kind, name }, (draft) => {
      // Merged inside the commit (under the store's write lock) so a concurrent
      // writer cannot slip in between reading the spec and replacing it.
      const current = draft.get(kind, name);
      if (!current) throw new StoreError('not_found', `${kind} '${name}' not found`);
      const spec = parseSpec(info, mergePatch(current, patch));
      draft.replace(kind, name, spec, ifVersion);
    });
    return respondWithObject(ctx, reply, kind, name, outcome);
  });

  app.delete<{ Params: Params }>(`${base}/:name`, async (request, reply) => {
    const name = nameParam(request.params.name);
    const ifVersion = ifMatchVersion(request);
    await commitObject(ctx, request, reply, `delete ${kind}/${name}`, { kind, name }, (draft) => draft.delete(kind, name, ifVersion), false);
    return reply.code(204).send();
  });
}

/** Creates the object; for an api_key credential, generates the key and returns it. */
function createObject(ctx: AdminContext, draft: Draft, kind: Kind, spec: ObjectSpec): string | undefined {
  if (kind !== 'credentials' || (spec as { kind?: string }).kind !== 'api_key') {
    draft.create(kind, spec);
    return undefined;
  }
  if (!ctx.secret) throw new ProblemError(503, 'API keys cannot be created: the server has no secret configured (SLUICE_SECRET)');
  const { key, prefix, hash } = generateApiKey(ctx.secret);
  draft.create(kind, spec, { prefix, hash });
  return key;
}

// ---- POST /v1/routes/<name>:canary ----------------------------------------

const CanaryBodySchema = z
  .object({
    weights: z
      .array(z.object({ upstream: NameSchema, weight: z.int().min(0).max(100) }).strict())
      .min(1)
      .max(16),
  })
  .strict()
  .superRefine((body, ctx) => {
    const total = body.weights.reduce((sum, w) => sum + w.weight, 0);
    if (total !== 100) ctx.addIssue({ code: 'custom', path: ['weights'], message: `weights must sum to 100 (got ${total})` });
    const seen = new Set<string>();
    body.weights.forEach((w, i) => {
      if (seen.has(w.upstream)) ctx.addIssue({ code: 'custom', path: ['weights', i, 'upstream'], message: `duplicate upstream '${w.upstream}'` });
      seen.add(w.upstream);
    });
  });

/**
 * Sets a route's traffic split in one call, as a deploy pipeline does per step:
 * one upstream at 100 becomes a plain `upstream` action, anything else a `split`.
 * Fastify cannot route a parameter followed by a literal ':canary', so the
 * action is parsed from the last path segment (names never contain ':').
 */
function registerCanary(app: FastifyInstance, ctx: AdminContext): void {
  app.post<{ Params: { target: string } }>('/v1/routes/:target', async (request, reply) => {
    const extra = Object.entries(ctx.routeActions ?? {}).find(([action]) => request.params.target.endsWith(`:${action}`));
    if (extra) return extra[1](request, reply, nameParam(actionTarget(request.params.target, extra[0])));
    const name = nameParam(actionTarget(request.params.target, 'canary'));
    const body = parseOrThrow(CanaryBodySchema, request.body, 422, 'invalid canary weights');
    const full = body.weights.find((w) => w.weight === 100);
    const action = full ? { upstream: full.upstream } : { split: body.weights };
    const ifVersion = ifMatchVersion(request);
    const outcome = await commitObject(ctx, request, reply, `canary routes/${name}`, { kind: 'routes', name }, (draft) => {
      const current = draft.get('routes', name) as Route | undefined;
      if (!current) throw new StoreError('not_found', `route '${name}' not found`);
      const spec = parseOrThrow(RouteSchema, { ...current, action }, 422, 'the canary would make the route invalid');
      draft.replace('routes', name, spec, ifVersion);
    });
    return respondWithObject(ctx, reply, 'routes', name, outcome);
  });
}

/** Splits `<name>:<action>`; anything else is an unknown route (404). */
export function actionTarget(segment: string, action: string): string {
  const suffix = `:${action}`;
  if (!segment.endsWith(suffix) || segment.length === suffix.length) throw new ProblemError(404, `no such action; use POST .../<name>${suffix}`);
  return segment.slice(0, -suffix.length);
}

// ---- helpers ---------------------------------------------------------------

/** The object name in a URL; one that no object can have is a 400 naming it. */
export function nameParam(raw: string): string {
  const parsed = NameSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const message = parsed.error.issues[0]?.message ?? 'not a valid name';
  throw new ProblemError(400, `'${clip(raw, 80)}' is not a valid object name: ${message}`, [{ path: 'name', message }]);
}

/** The wire form of a stored object. */
export function representation(stored: StoredObject) {
  return {
    name: stored.name,
    version: stored.version,
    ...(stored.keyPrefix ? { key_prefix: stored.keyPrefix } : {}),
    created_at: stored.createdAt.toISOString(),
    updated_at: stored.updatedAt.toISOString(),
    spec: stored.spec,
  };
}

async function respondWithObject(
  ctx: AdminContext,
  reply: FastifyReply,
  kind: Kind,
  name: string,
  outcome: WriteOutcome<StoredObject | undefined>,
  extra: Record<string, string> = {},
) {
  const stored = 'alongside' in outcome ? outcome.alongside : await ctx.store.get(kind, name);
  if (stored) reply.header('etag', etag(stored.version));
  const { revision, changed, applied } = outcome;
  return reply.send({ ...(stored ? representation(stored) : { name }), ...extra, revision, changed, ...(applied === undefined ? {} : { applied }) });
}

async function mustGet(ctx: AdminContext, kind: Kind, name: string): Promise<StoredObject> {
  const stored = await ctx.store.get(kind, name);
  if (!stored) throw new ProblemError(404, `${kind} '${name}' not found`);
  return stored;
}

function parseSpec(info: KindInfo, body: unknown): ObjectSpec {
  return parseOrThrow(info.schema, body, 422, `invalid ${info.singular}`);
}

export function parseOrThrow<T>(schema: z.ZodType<T, unknown>, input: unknown, status: number, detail: string): T {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new ProblemError(status, detail, fieldsFromIssues(issuesFromZod(parsed.error)));
  return parsed.data;
}

function withDefaultName(body: unknown, name: string): unknown {
  return isPlainObject(body) && body.name === undefined ? { ...body, name } : body;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 7396 JSON merge patch: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === '__proto__') continue;
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/**
 * Commits a change to one object. The store validates the whole config after
 * sorting each kind by name, so its issue paths look like
 * ['routes', 7, 'action', 'upstream']: issues about this object are rewritten
 * relative to the request body ('action.upstream'), and issues about other
 * objects name them instead of a sorted index ('routes.checkout.action.upstream').
 */
async function commitObject(
  ctx: AdminContext,
  request: FastifyRequest,
  reply: FastifyReply,
  message: string,
  focus: { kind: Kind; name: string },
  change: (draft: Draft) => void,
  readBack = true,
): Promise<WriteOutcome<StoredObject | undefined>> {
  let planned: Draft | undefined;
  try {
    // The object as written, read while the fleet applies it (for the response body and ETag).
    const stored = readBack ? () => ctx.store.get(focus.kind, focus.name) : undefined;
    const plan = (draft: Draft) => {
      change(draft);
      planned = draft; // its sorted names are only needed to explain a refusal: not worked out on every write
    };
    return await commitWrite(ctx, request, reply, message, plan, stored);
  } catch (err) {
    if (!(err instanceof StoreError) || err.code !== 'invalid') throw err;
    const sorted = planned ? sortedNames(planned) : {};
    throw new StoreError('invalid', err.message, err.issues.map((issue) => readableIssue(issue, focus, sorted)));
  }
}

function sortedNames(draft: Draft): Partial<Record<Kind, string[]>> {
  const out: Partial<Record<Kind, string[]>> = {};
  for (const info of KIND_INFO) out[info.kind] = (draft.config[info.kind] as ObjectSpec[]).map((o) => o.name).sort();
  return out;
}

function readableIssue(issue: Issue, focus: { kind: Kind; name: string }, sorted: Partial<Record<Kind, string[]>>): Issue {
  const [kind, index, ...rest] = issue.path;
  const name = typeof index === 'number' ? sorted[kind as Kind]?.[index] : undefined;
  if (name === undefined) return issue;
  if (kind === focus.kind && name === focus.name) return { path: rest, message: issue.message };
  return { path: [kind as Kind, name, ...rest], message: issue.message };
}
