// A route encoded in parts (match, action shared through the per-translation
// memo, the rest) must be byte for byte the route encoded whole, for every
// route the model admits: generated routes, with rate-limit policies, ring-hash
// upstreams and auth in play, and on a bare gateway.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RateLimitPolicySchema, RouteSchema, UpstreamSchema, type Route } from '../../control-plane/src/model/index.ts';
import { encode } from '../../control-plane/src/proto/codec.ts';
import { countNeeds, needsOf } from '../../control-plane/src/translate/filters.ts';
import { encodeRoute } from '../../control-plane/src/translate/route-config.ts';
import { envoyRoutes, type RouteContext } from '../../control-plane/src/translate/routes.ts';
import { route as routeArbitrary } from '../helpers/arbitraries.ts';

const upstreams = new Map([
  ['a', UpstreamSchema.parse({ name: 'a', endpoints: [{ host: '10.0.0.1', port: 80 }] })],
  ['b', UpstreamSchema.parse({ name: 'b', endpoints: [{ host: '10.0.0.2', port: 80 }], lb_policy: 'ring_hash', hash_key: { header: 'x-user' } })],
]);
const policies = new Map([
  ['per-route', RateLimitPolicySchema.parse({ name: 'per-route', key: ['route'], limit: { requests: 10, per: 'second' } })],
  ['everywhere', RateLimitPolicySchema.parse({ name: 'everywhere', key: ['route'], limit: { requests: 50, per: 'minute' }, scope: 'gateway', on_error: 'deny' })],
]);
const options = {
  listenerPort: 10000,
  authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: 9001 },
  ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: 9002, domain: 'sluice' },
};

describe('translate: a route encoded in parts', () => {
  it('is the route encoded whole, with the action memo shared across routes', () => {
    // 300 generated batches of up to 6 routes; a differing byte is deterministic, not statistical.
    fc.assert(
      fc.property(fc.array(routeArbitrary, { minLength: 1, maxLength: 6 }), (resolvers) => {
        const routes: Route[] = [];
        for (const resolve of resolvers) {
          const parsed = RouteSchema.safeParse(resolve({ upstreams: ['a', 'b'], policies: [...policies.keys()], providers: [] }));
          if (parsed.success) routes.push(parsed.data);
        }
        // With policies and the services (most routes carry per-filter config), and a bare gateway in each
        // stats mode (most routes are a name, a match and an action).
        const bare = new Map<string, never>();
        const contexts = [
          { options, policies },
          ...(['all', 'traffic_split', 'off'] as const).map((routeStats) => ({ options: { listenerPort: 10000, routeStats }, policies: bare })),
        ];
        for (const { options: opts, policies: inForce } of contexts) {
          const ctx: RouteContext = { needs: needsOf(countNeeds(routes, opts, inForce)), options: opts, policies: inForce, anys: new Map(), upstreams, encodedActions: new Map() };
          for (const route of routes) {
            for (const envoyRoute of envoyRoutes(route, ctx)) {
              assert.deepEqual(Buffer.from(encodeRoute(envoyRoute, ctx.encodedActions)), Buffer.from(encode('envoy.config.route.v3.Route', envoyRoute)));
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
