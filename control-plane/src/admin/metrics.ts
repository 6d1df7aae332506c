// GET /metrics: the control plane's Prometheus exposition, and the admin API's
// own request counters (fed from every response, by route pattern so a scan of
// random URLs cannot grow the series: unrouted requests share one label).
//
// Open without a token only when the admin API listens on loopback (whoever can
// reach it is on the host) or METRICS_PUBLIC=true says so; otherwise a read
// token is needed, like every other GET.
import type { FastifyInstance } from 'fastify';
import type { ControlPlaneMetrics } from '../telemetry/index.ts';

export interface MetricsEndpointOptions {
  metrics: ControlPlaneMetrics;
  /** Serve /metrics without a token (see metricsArePublic). */
  public: boolean;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

/** Whether /metrics may be served without a token for an admin API bound to `adminHost`. */
export function metricsArePublic(adminHost: string, metricsPublicSetting: boolean): boolean {
  return metricsPublicSetting || LOOPBACK_HOSTS.has(adminHost) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(adminHost);
}

export function registerMetrics(app: FastifyInstance, options: MetricsEndpointOptions | undefined): void {
  if (!options) return;
  const { metrics } = options;
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.adminRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.adminRequestSeconds.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', { config: { publicRead: options.public } }, async (_request, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.type(contentType).send(body);
  });
}
