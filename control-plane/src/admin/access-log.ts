// One access-log line per admin request: method, route pattern (not the raw
// URL, which may be 10 KB of junk), status, latency and the acting token's
// name — never the token. A 4xx line lists the problem's field names; a 5xx is
// logged at error level (its cause is logged by the error handler).
import type { FastifyInstance } from 'fastify';
import { clip } from './problem.ts';

export const REQUEST_ID_HEADER = 'x-request-id';

export function registerAccessLog(app: FastifyInstance): void {
  // Lets a client (and a test) find the log lines of its request.
  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    const status = reply.statusCode;
    const route = request.routeOptions.url ?? null;
    const line = {
      method: request.method,
      route,
      // Unrouted requests have no pattern; a clipped path (no query) says what was asked.
      ...(route === null ? { path: clip(request.url.split('?')[0] ?? '', 200) } : {}),
      status,
      latency_ms: Math.round(reply.elapsedTime * 100) / 100,
      actor: request.principal?.name ?? 'anonymous',
      ...(request.problem ? { problem_fields: request.problem.fields } : {}),
    };
    if (status >= 500) request.log.error(line, 'admin request');
    else request.log.info(line, 'admin request');
  });
}
