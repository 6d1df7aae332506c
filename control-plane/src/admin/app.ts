// The admin API: a fastify app wired from plugins split by responsibility.
// Nothing here listens; main.ts calls listen(), tests use app.inject().
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { createLogger, type Logger } from '../log.ts';
import type { ConfigStore } from '../store/config-store.ts';
import type { PrismaClient } from '../store/prisma.ts';
import type { NodeRegistry } from '../xds/registry.ts';
import { registerAccessLog } from './access-log.ts';
import { registerAuth } from './auth.ts';
import type { AdminContext } from './commit.ts';
import { registerConfig } from './config.ts';
import { RevisionTracker, registerFleet, type SharedFleet } from './fleet.ts';
import { registerHealth, type Readiness } from './health.ts';
import { type MetricsEndpointOptions, registerMetrics } from './metrics.ts';
import { registerOpenApi } from './openapi.ts';
import { clientErrorHandler, frameworkErrors, MAX_PATH_SEGMENT, registerBodyParsers, registerHeaderChecks, registerUrlChecks } from './input.ts';
import { registerProblemHandlers } from './problem.ts';
import { registerResources } from './resources.ts';
import { registerRevisions } from './revisions.ts';
import { registerStats, type StatsEndpointOptions } from './stats.ts';
import { registerRollouts, type RolloutOperations } from './rollouts.ts';
import { registerServerTiming } from './timing.ts';

export interface AdminDeps {
  store: ConfigStore;
  prisma: PrismaClient;
  registry: NodeRegistry;
  /** HMAC key for API-key hashes; without it api_key credentials cannot be created. */
  secret?: string;
  /** Request body limit in bytes (default 1 MiB); larger bodies get 413. */
  bodyLimit?: number;
  /** The limit for whole configs (PUT /v1/config, :validate, :diff); default DEFAULT_CONFIG_BODY_LIMIT. */
  configBodyLimit?: number;
  /** Where the admin log goes (pino, JSON lines); silent when not given. */
  logger?: Logger;
  /** GET /metrics and admin request counters (metrics.ts); absent: no /metrics. */
  metrics?: MetricsEndpointOptions;
  /** GET /v1/routes/{name}/stats and /v1/upstreams/{name}/stats (stats.ts); absent: not served. */
  stats?: StatsEndpointOptions;
  /** Automated canary rollouts (rollout/ controller); absent: no rollout endpoints. */
  rollouts?: RolloutOperations;
  /** Fleet status of the other control-plane replicas (store/fleet-status.ts). */
  sharedFleet?: SharedFleet;
  /** What GET /readyz reports (health.ts); absent: never ready. */
  readiness?: Readiness;
  /** Server-Timing headers on responses (timing.ts; config SLUICE_SERVER_TIMING), a profiling aid; default off. */
  serverTiming?: boolean;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export function buildAdminApp(deps: AdminDeps): FastifyInstance {
  const logger: FastifyBaseLogger = deps.logger ?? createLogger('silent');
  const app = Fastify({
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // Default serializers log method/url only, and log.ts redacts credential
    // headers and fields: never a token or a key in the log.
    loggerInstance: logger,
    // One access line per request instead of fastify's two (see access-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // Long enough that a too-long name reaches the handler and gets a 400 naming it.
    routerOptions: { maxParamLength: MAX_PATH_SEGMENT },
    frameworkErrors,
    clientErrorHandler,
  });
  registerAccessLog(app);
  if (deps.serverTiming) registerServerTiming(app);
  registerProblemHandlers(app);
  registerHeaderChecks(app);
  registerBodyParsers(app);
  registerUrlChecks(app);
  registerAuth(app, deps.prisma);

  const ctx: AdminContext = { store: deps.store, registry: deps.registry, tracker: new RevisionTracker(deps.store), secret: deps.secret, sharedFleet: deps.sharedFleet };
  const commitSeconds = deps.metrics?.metrics.commitSeconds;
  if (commitSeconds) ctx.commitObserved = (seconds) => commitSeconds.observe(seconds);
  registerHealth(app, deps.readiness);
  registerMetrics(app, deps.metrics);
  registerResources(app, ctx);
  registerConfig(app, ctx, deps.configBodyLimit);
  registerRevisions(app, ctx);
  registerStats(app, deps.stats);
  registerRollouts(app, ctx, deps.rollouts);
  registerFleet(app, deps.registry, ctx.tracker, deps.sharedFleet);
  registerOpenApi(app);
  return app;
}
