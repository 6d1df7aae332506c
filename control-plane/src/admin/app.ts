// The admin API: a fastify app wired from plugins split by responsibility.
// Nothing here listens; main.ts calls listen(), tests use app.inject().
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import type { ConfigStore } from '../store/config-store.ts';
import type { PrismaClient } from '../store/prisma.ts';
import type { NodeRegistry } from '../xds/registry.ts';
import { registerAuth } from './auth.ts';
import type { AdminContext } from './commit.ts';
import { registerConfig } from './config.ts';
import { RevisionTracker, registerFleet } from './fleet.ts';
import { registerOpenApi } from './openapi.ts';
import { ProblemError, registerProblemHandlers } from './problem.ts';
import { registerResources } from './resources.ts';
import { registerRevisions } from './revisions.ts';

export interface AdminDeps {
  store: ConfigStore;
  prisma: PrismaClient;
  registry: NodeRegistry;
  /** HMAC key for API-key hashes; without it api_key credentials cannot be created. */
  secret?: string;
  /** Request body limit in bytes (default 1 MiB); larger bodies get 413. */
  bodyLimit?: number;
  logger?: boolean;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export function buildAdminApp(deps: AdminDeps): FastifyInstance {
  const app = Fastify({
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // Default serializers log method/url only: never headers (tokens) or bodies (keys).
    logger: deps.logger ?? false,
    return503OnClosing: true,
  });
  registerProblemHandlers(app);
  registerBodyParsers(app);
  registerAuth(app, deps.prisma);

  const ctx: AdminContext = { store: deps.store, registry: deps.registry, tracker: new RevisionTracker(deps.store), secret: deps.secret };
  app.get('/healthz', async () => ({ status: 'ok' }));
  registerResources(app, ctx);
  registerConfig(app, ctx);
  registerRevisions(app, ctx);
  registerFleet(app, deps.registry, ctx.tracker);
  registerOpenApi(app);
  return app;
}

function registerBodyParsers(app: FastifyInstance): void {
  // PATCH bodies are JSON merge patches (RFC 7396); same safe JSON parser.
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  app.addContentTypeParser(['application/yaml', 'text/yaml', 'application/x-yaml'], { parseAs: 'string' }, (_request: FastifyRequest, body: string | Buffer, done) => {
    try {
      done(null, parseYaml(body.toString()) as unknown);
    } catch (err) {
      done(new ProblemError(400, `body is not valid YAML: ${err instanceof Error ? err.message.split('\n')[0] : 'parse error'}`), undefined);
    }
  });
}
