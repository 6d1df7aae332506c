// Per-phase timing of admin requests, for bench/write-path.profile.ts: when
// switched on (SLUICE_SERVER_TIMING=true, a debugging aid, off by default) each
// response carries a Server-Timing header (`auth;dur=0.8, commit;dur=4.1, ...,
// total;dur=9.3`, milliseconds since fastify received the request). Off, the
// marks cost one WeakMap lookup and nothing is written anywhere.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const marks = new WeakMap<FastifyRequest, Array<{ phase: string; at: number }>>();

/** Turns Server-Timing on for `app` (see the file comment). */
export function registerServerTiming(app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    marks.set(request, []);
  });
  app.addHook('onSend', async (request, reply) => {
    const list = marks.get(request);
    if (!list) return;
    let previous = 0;
    const parts = list.map(({ phase, at }) => {
      const part = `${phase};dur=${(at - previous).toFixed(2)}`;
      previous = at;
      return part;
    });
    parts.push(`total;dur=${reply.elapsedTime.toFixed(2)}`);
    reply.header('server-timing', parts.join(', '));
  });
}

/** Marks the end of `phase` (its duration runs from the previous mark, or from the request's arrival). */
export function markPhase(request: FastifyRequest, reply: FastifyReply, phase: string): void {
  marks.get(request)?.push({ phase, at: reply.elapsedTime });
}
