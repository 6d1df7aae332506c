// GET /v1/routes/{name}/stats and GET /v1/upstreams/{name}/stats: the fleet's
// traffic for one route or upstream over the rolling window (or since
// ?since_seconds ago), from the metrics Envoy streams to the control plane.
// Read role, like every GET.
import type { FastifyInstance } from 'fastify';
import type { FleetStatsReader, WindowStats } from '../telemetry/index.ts';
import { ProblemError } from './problem.ts';

export interface StatsEndpointOptions {
  reader: FleetStatsReader;
  /** Whether a route or upstream of that name exists in the current State. */
  exists(kind: 'route' | 'upstream', name: string): boolean;
  /** The window's length: the default and largest ?since_seconds. */
  windowMs: number;
  /** Bucket width: ?since_seconds is rounded down to a bucket start, so the bucket holding that instant counts. */
  bucketMs: number;
}

function sinceMs(query: unknown, windowMs: number, bucketMs: number): number {
  const raw = (query as Record<string, unknown> | undefined)?.since_seconds;
  if (raw === undefined) return 0; // the whole window
  const seconds = Number(raw);
  if (typeof raw !== 'string' || !/^\d{1,6}$/.test(raw) || seconds < 1 || seconds * 1000 > windowMs) {
    throw new ProblemError(400, `since_seconds must be a whole number from 1 to ${windowMs / 1000}`, [{ path: 'since_seconds', message: 'out of range' }]);
  }
  const since = Date.now() - seconds * 1000;
  return since - (since % bucketMs);
}

function body(name: string, since: number, stats: WindowStats): Record<string, unknown> {
  return {
    name,
    since: since === 0 ? null : new Date(since).toISOString(),
    requests: stats.requests,
    status_2xx: stats.status2xx,
    status_4xx: stats.status4xx,
    status_5xx: stats.status5xx,
    p50_ms: stats.p50Ms ?? null,
    p95_ms: stats.p95Ms ?? null,
    p99_ms: stats.p99Ms ?? null,
  };
}

export function registerStats(app: FastifyInstance, options: StatsEndpointOptions | undefined): void {
  if (!options) return;
  const { reader, exists, windowMs, bucketMs } = options;
  app.get<{ Params: { name: string } }>('/v1/routes/:name/stats', async (request) => {
    const { name } = request.params;
    if (!exists('route', name)) throw new ProblemError(404, `route '${name}' not found`);
    const since = sinceMs(request.query, windowMs, bucketMs);
    return body(name, since, reader.route(name, since));
  });
  app.get<{ Params: { name: string } }>('/v1/upstreams/:name/stats', async (request) => {
    const { name } = request.params;
    if (!exists('upstream', name)) throw new ProblemError(404, `upstream '${name}' not found`);
    const since = sinceMs(request.query, windowMs, bucketMs);
    return body(name, since, reader.upstream(name, since));
  });
}
