// Automated canary rollouts over the admin API:
//   POST /v1/routes/<name>:rollout          start one (body: model/rollout.ts RolloutSpec)
//   GET  /v1/rollouts[?route=&state=&limit=] newest first
//   GET  /v1/rollouts/<id>                   state, each step's decision and its numbers
//   POST /v1/rollouts/<id>:pause | :resume | :abort
// The controller itself is rollout/ (composition root wires it in); this file
// only knows the operations it offers, so admin/ does not import rollout/.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { NameSchema } from '../model/index.ts';
import { ROLLOUT_STATES, RolloutSpecSchema, type RolloutSpec, type RolloutState, type RolloutView } from '../model/rollout.ts';
import { actorOf } from './auth.ts';
import type { AdminContext } from './commit.ts';
import { clip, ProblemError } from './problem.ts';
import { parseOrThrow } from './resources.ts';

export interface RolloutOperations {
  create(route: string, spec: RolloutSpec, actor: string): Promise<RolloutView>;
  get(id: string): Promise<RolloutView | undefined>;
  list(filter: { route?: string; state?: RolloutState; limit: number }): Promise<RolloutView[]>;
  pause(id: string, actor: string): Promise<RolloutView>;
  resume(id: string, actor: string): Promise<RolloutView>;
  abort(id: string, actor: string): Promise<RolloutView>;
  /** Told after an admin commit changed these routes: a rollout on one of them aborts. */
  routesChanged(routes: string[], actor: string, revision: number): Promise<void>;
}

const ListQuerySchema = z.looseObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  route: NameSchema.optional(),
  state: z.enum(ROLLOUT_STATES).optional(),
});

const IdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a rollout id (a lowercase UUID)');
const OPERATOR_ACTIONS = ['pause', 'resume', 'abort'] as const;

function rolloutId(raw: string): string {
  const parsed = IdSchema.safeParse(raw);
  if (!parsed.success) throw new ProblemError(400, `'${clip(raw, 80)}' is not a rollout id`, [{ path: 'id', message: 'must be a rollout id (a lowercase UUID)' }]);
  return parsed.data;
}

export function registerRollouts(app: FastifyInstance, ctx: AdminContext, rollouts: RolloutOperations | undefined): void {
  if (!rollouts) return;
  ctx.routeActions = { ...ctx.routeActions, rollout: (request, reply, route) => startRollout(rollouts, request, reply, route) };
  ctx.onRoutesChanged = async (routes, actor, revision) => {
    // The commit has happened; a failure here must not turn it into an error.
    // The controller also refuses to move a route someone else moved.
    await rollouts.routesChanged(routes, actor, revision).catch((err: unknown) => app.log.warn({ err }, 'rollout: could not abort rollouts of changed routes'));
  };

  app.get('/v1/rollouts', async (request) => {
    const query = parseOrThrow(ListQuerySchema, request.query, 400, 'invalid query parameters');
    return { items: await rollouts.list({ limit: query.limit, ...(query.route ? { route: query.route } : {}), ...(query.state ? { state: query.state } : {}) }) };
  });

  app.get<{ Params: { id: string } }>('/v1/rollouts/:id', async (request) => {
    const id = rolloutId(request.params.id);
    const found = await rollouts.get(id);
    if (!found) throw new ProblemError(404, `rollout '${id}' not found`);
    return found;
  });

  // Fastify cannot route ':id' followed by a literal ':pause'; parse the segment.
  app.post<{ Params: { target: string } }>('/v1/rollouts/:target', async (request) => {
    const match = /^(.*):([a-z]+)$/.exec(request.params.target);
    const action = OPERATOR_ACTIONS.find((a) => a === match?.[2]);
    if (!match || !action) throw new ProblemError(404, 'no such action; use POST /v1/rollouts/<id>:pause, :resume or :abort');
    const id = rolloutId(match[1]!);
    return rollouts[action](id, actorOf(request));
  });
}

async function startRollout(rollouts: RolloutOperations, request: FastifyRequest, reply: FastifyReply, route: string): Promise<unknown> {
  const spec = parseOrThrow(RolloutSpecSchema, request.body, 422, 'invalid rollout');
  const started = await rollouts.create(route, spec, actorOf(request));
  return reply.code(201).header('location', `/v1/rollouts/${started.id}`).send(started);
}
