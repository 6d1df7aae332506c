// Liveness and readiness, both without a token (probes carry none).
//   GET /healthz: the process answers (a liveness probe: restart it if not).
//   GET /readyz:  this replica can serve the fleet: the change feed is connected
//                 to Postgres and the publisher has published the store's head
//                 revision (a readiness probe: send Envoys elsewhere until then).
import type { FastifyInstance } from 'fastify';

export interface ReadinessReport {
  ready: boolean;
  /** The change feed holds its LISTEN connection to Postgres. */
  feed_connected: boolean;
  /** The newest committed revision, or null when Postgres did not answer. */
  head_revision: number | null;
  /** The newest revision this replica published to its snapshot cache. */
  published_revision: number | null;
}

export interface Readiness {
  feedConnected(): boolean;
  /** The store's head revision (a Postgres query). */
  headRevision(): Promise<number>;
  publishedRevision(): number;
}

/** How long /readyz waits for Postgres before answering "not ready". */
const HEAD_QUERY_TIMEOUT_MS = 1_000;

export async function readinessReport(readiness: Readiness | undefined): Promise<ReadinessReport> {
  if (!readiness) return { ready: false, feed_connected: false, head_revision: null, published_revision: null };
  const head = await withTimeout(readiness.headRevision(), HEAD_QUERY_TIMEOUT_MS).catch(() => null);
  const feedConnected = readiness.feedConnected();
  const published = readiness.publishedRevision();
  return {
    ready: feedConnected && head !== null && published >= head,
    feed_connected: feedConnected,
    head_revision: head,
    published_revision: published < 0 ? null : published,
  };
}

export function registerHealth(app: FastifyInstance, readiness: Readiness | undefined): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { publicRead: true } }, async (_request, reply) => {
    const report = await readinessReport(readiness);
    return reply.code(report.ready ? 200 : 503).send(report);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
